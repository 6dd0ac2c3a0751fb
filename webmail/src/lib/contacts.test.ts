import { describe, expect, it } from 'vitest';
import { accept, correspondents, suggest } from './contacts';
import type { Message } from './types';

const m = (p: Partial<Message>): Message =>
  ({ id: p.subject, message_id: '<x@a>', folder: 'inbox', status: 'complete', seen: true, from: '', to: [], subject: 's', date: '2026-01-01T00:00:00Z', created: '', updated: '', attachments: [], size: 0, ...p }) as Message;

describe('contacts', () => {
  const all = [
    m({ from: 'Bob Builder <bob@b.test>', to: ['me@a.test'] }),
    m({ from: 'bob@b.test', to: ['me@a.test'], date: '2026-02-01T00:00:00Z' }),
    m({ folder: 'sent', status: 'sent', from: 'me@a.test', to: ['Carol <carol@c.test>', 'me@a.test'], cc: ['dan@d.test'] }),
    m({ folder: 'sent', status: 'sent', from: 'me@a.test', to: ['carol@c.test'] }),
    m({ from: 'Mail Delivery System <postmaster@a.test>', subject: 'Undelivered mail: x' }),
    m({ folder: 'junk', from: 'spam@s.test' }),
  ];
  it('ranks by how often (written to counts double) and how lately, keeps the named form, leaves out me, notices and junk', () => {
    expect(correspondents(all, 'Me@a.test')).toEqual(['Carol <carol@c.test>', 'Bob Builder <bob@b.test>', 'dan@d.test']);
  });
  it('suggests by the part being typed, not twice', () => {
    const c = correspondents(all, 'me@a.test');
    expect(suggest(c, 'car')).toEqual(['Carol <carol@c.test>']);
    expect(suggest(c, 'Carol <carol@c.test>, b')).toEqual(['Bob Builder <bob@b.test>']);
    expect(suggest(c, 'carol@c.test, car')).toEqual([]);
    expect(suggest(c, '')).toEqual([]);
  });
  it('accepts into the list', () => {
    expect(accept('dan@d.test, car', 'Carol <carol@c.test>')).toBe('dan@d.test, Carol <carol@c.test>, ');
    expect(accept('car', 'Carol <carol@c.test>')).toBe('Carol <carol@c.test>, ');
  });
});

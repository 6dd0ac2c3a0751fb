import { describe, expect, it } from 'vitest';
import { SSEParser } from './sse';

describe('SSEParser', () => {
  it('parses events split across chunks', () => {
    const p = new SSEParser();
    expect(p.feed('event: chan')).toEqual([]);
    expect(p.feed('ge\ndata: {"cursor":"4')).toEqual([]);
    expect(p.feed('2"}\n\n')).toEqual([{ event: 'change', data: '{"cursor":"42"}' }]);
  });
  it('joins data lines, ignores comments, handles CRLF and CR', () => {
    const p = new SSEParser();
    const evs = p.feed(': keep-alive\r\ndata: a\r\ndata:b\r\rdata: c\n\n');
    expect(evs).toEqual([
      { event: 'message', data: 'a\nb' },
      { event: 'message', data: 'c' },
    ]);
  });
  it('keeps the last event id and retry', () => {
    const p = new SSEParser();
    const evs = p.feed('id: 7\nretry: 2500\nevent: change\ndata: x\n\nretry: soon\ndata: y\n\n');
    expect(evs).toEqual([
      { event: 'change', data: 'x', id: '7' },
      { event: 'message', data: 'y', id: '7' },
    ]);
    expect(p.retry).toBe(2500);
    expect(p.lastEventId).toBe('7');
  });
  it('dispatches nothing for an event without data', () => {
    const p = new SSEParser();
    expect(p.feed('event: ping\n\n')).toEqual([]);
    expect(p.feed('data\n\n')).toEqual([{ event: 'message', data: '' }]);
  });
});

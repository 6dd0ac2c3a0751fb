import { describe, expect, it } from 'vitest';
import { checkList, formatAddress, parseAddress, splitList, validAddrSpec } from './address';

describe('addresses', () => {
  it.each([
    ['alice@a.test', true],
    ['first.last+tag@sub.example.com', true],
    ['a@localhost', false],
    ['a@1.2.3.4', false],
    ['a@-x.test', false],
    ['a@x-.test', false],
    ['.a@x.test', false],
    ['a..b@x.test', false],
    ['a@b', false],
    ['@x.test', false],
    ['a@x.test.', false],
    ['ünï@x.test', false],
    ['a@exämple.test', false],
  ])('validAddrSpec(%s) = %s', (s, ok) => {
    expect(validAddrSpec(s)).toBe(ok);
  });
  it('splits lists outside quotes and brackets', () => {
    expect(splitList('"Doe, Jane" <jane@x.test>, bob@y.test; <c@z.test>,,')).toEqual([
      '"Doe, Jane" <jane@x.test>',
      'bob@y.test',
      '<c@z.test>',
    ]);
  });
  it('parses names', () => {
    expect(parseAddress('Alice <alice@a.test>')).toEqual({ name: 'Alice', addr: 'alice@a.test' });
    expect(parseAddress('"Doe, Jane" <jane@x.test>')).toEqual({ name: 'Doe, Jane', addr: 'jane@x.test' });
    expect(parseAddress('Bad@Name <x@y.test>')).toBeNull();
  });
  it('reports invalid entries', () => {
    const r = checkList('alice@a.test, nobody, carol@b.test');
    expect(r.addresses.map((a) => a.addr)).toEqual(['alice@a.test', 'carol@b.test']);
    expect(r.invalid).toEqual(['nobody']);
  });
  it('formats and re-parses', () => {
    for (const a of [
      { name: '', addr: 'a@x.test' },
      { name: 'Ann Lee', addr: 'a@x.test' },
      { name: 'Lee, Ann "AL"', addr: 'a@x.test' },
      { name: 'J. Doe', addr: 'j@x.test' },
    ]) {
      expect(parseAddress(formatAddress(a))).toEqual(a);
    }
  });
});

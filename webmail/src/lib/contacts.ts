// Correspondents for address autocomplete: whoever wrote to the user and
// whomever the user wrote to, ranked by how often and how lately, one entry
// per address (the fullest form seen: "Name <addr>").
import { addrOf, displayName } from './address';
import { isNotice } from './human';
import type { Message } from './types';

export function correspondents(all: Iterable<Message>, me: string): string[] {
  const self = me.toLowerCase();
  const seen = new Map<string, { form: string; score: number }>();
  const add = (who: string, when: number, weight: number) => {
    const a = addrOf(who);
    if (!a || a === self || !a.includes('@')) return;
    const cur = seen.get(a);
    // Written to counts more than written by; a recent one more than an old.
    const score = weight + when / 1e13;
    const form = displayName(who) !== a && who.includes('<') ? who.trim() : (cur?.form ?? a);
    seen.set(a, { form, score: (cur?.score ?? 0) + score });
  };
  for (const m of all) {
    if (m.folder === 'trash' || m.folder === 'junk' || isNotice(m.from, m.subject)) continue;
    const when = Date.parse(m.date ?? m.updated) || 0;
    if (m.status === 'sent') for (const r of [...m.to, ...(m.cc ?? []), ...(m.bcc ?? [])]) add(r, when, 2);
    else if (m.status !== 'draft') add(m.from, when, 1);
  }
  return [...seen.values()].sort((x, y) => y.score - x.score).map((x) => x.form);
}

// suggest returns the contacts matching the address being typed (the part
// after the last comma), leaving out those already in the field.
export function suggest(contacts: readonly string[], value: string, max = 6): string[] {
  const cut = value.lastIndexOf(',');
  const typed = value.slice(cut + 1).trim().toLowerCase();
  if (!typed) return [];
  const have = new Set(value.slice(0, cut + 1).split(',').map((s) => addrOf(s)).filter(Boolean));
  return contacts.filter((c) => c.toLowerCase().includes(typed) && !have.has(addrOf(c))).slice(0, max);
}

// accept puts a suggestion in place of what was being typed.
export function accept(value: string, contact: string): string {
  const head = value.slice(0, value.lastIndexOf(',') + 1).trim();
  return `${head ? head + ' ' : ''}${contact}, `;
}

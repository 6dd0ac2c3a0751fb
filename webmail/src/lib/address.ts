// Address checks for the compose form: RFC 5322 address-lists restricted as
// docs/PROTOCOL.md §2.4 restricts them (ASCII domains of LDH labels with a dot
// and a last label that is not all digits).

export interface Address {
  name: string; // display name, "" when none
  addr: string; // addr-spec
}

const atext = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]";
const dotAtom = new RegExp(`^${atext}+(\\.${atext}+)*$`);
const label = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

// validAddrSpec checks local@domain.
export function validAddrSpec(s: string): boolean {
  const at = s.lastIndexOf('@');
  if (at <= 0 || at === s.length - 1) return false;
  const local = s.slice(0, at);
  const domain = s.slice(at + 1);
  if (!dotAtom.test(local) || local.length > 64) return false;
  const labels = domain.split('.');
  if (labels.length < 2 || domain.length > 253) return false;
  if (!labels.every((l) => label.test(l))) return false;
  return !/^\d+$/.test(labels[labels.length - 1]!);
}

// splitList splits an address-list on commas (and semicolons, which people
// type) outside quotes and angle brackets.
export function splitList(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  let angle = false;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (quoted && ch === '\\' && i + 1 < s.length) {
      cur += ch + s[++i];
      continue;
    }
    if (ch === '"') quoted = !quoted;
    else if (!quoted && ch === '<') angle = true;
    else if (!quoted && ch === '>') angle = false;
    if (!quoted && !angle && (ch === ',' || ch === ';')) {
      if (cur.trim()) out.push(cur.trim());
      cur = '';
      continue;
    }
    cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

// parseAddress parses "addr", "<addr>" or "Name <addr>" ("Name" may be quoted).
export function parseAddress(s: string): Address | null {
  const t = s.trim();
  const m = /^(.*?)\s*<([^<>]*)>$/.exec(t);
  if (m) {
    let name = m[1]!.trim();
    const addr = m[2]!.trim();
    if (name.startsWith('"')) {
      if (!/^"(?:[^"\\\r\n]|\\.)*"$/.test(name)) return null;
      name = name.slice(1, -1).replace(/\\(.)/g, '$1');
    } else if (/[<>"@,;:\\\r\n]/.test(name)) {
      return null;
    }
    return validAddrSpec(addr) ? { name, addr } : null;
  }
  return validAddrSpec(t) ? { name: '', addr: t } : null;
}

export interface ListCheck {
  addresses: Address[];
  invalid: string[]; // the entries that are not addresses, as typed
}

export function checkList(s: string): ListCheck {
  const addresses: Address[] = [];
  const invalid: string[] = [];
  for (const part of splitList(s)) {
    const a = parseAddress(part);
    if (a) addresses.push(a);
    else invalid.push(part);
  }
  return { addresses, invalid };
}

// formatAddress writes an address for a header: the name is quoted when it
// holds anything but atext and spaces.
export function formatAddress(a: Address): string {
  if (!a.name) return a.addr;
  const plain = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ .-]+$/.test(a.name) && !a.name.includes('.');
  const name = plain ? a.name : `"${a.name.replace(/(["\\])/g, '\\$1')}"`;
  return `${name} <${a.addr}>`;
}

// addrOf returns the bare address of a header value, lower-cased, or the
// input when it does not parse.
export function addrOf(s: string): string {
  const a = parseAddress(s);
  return (a ? a.addr : s.trim()).toLowerCase();
}

// displayName returns the name of "Name <addr>", or the address.
export function displayName(s: string): string {
  const a = parseAddress(s);
  if (!a) return s;
  return a.name || a.addr;
}

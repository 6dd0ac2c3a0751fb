// Unpadded base64url (RFC 4648 §5), as PKCE and Content-IDs use it.

export function b64u(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export async function sha256(data: Uint8Array | string): Promise<Uint8Array> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
}

// contentID is a resource's Content-ID: b64u(SHA-256(bytes)) (PROTOCOL §3.1).
export async function contentID(data: Uint8Array | string): Promise<string> {
  return b64u(await sha256(data));
}

// The mailbox API's JSON objects (docs/PROTOCOL.md §8.7), by the names the
// webmail uses. They are generated from the server's Go types (api.gen.ts,
// go generate ./apidoc), never written here. Unknown members are ignored, as
// the protocol asks.
import type * as api from './api.gen';

export type Folder = api.Folder;
// Every folder, in the order the UI shows them; Record<Folder, ...> makes a
// folder the server adds fail the build until it is placed here.
const folderOrder: Record<Folder, number> = { inbox: 0, sent: 1, drafts: 2 };
export const FOLDERS: readonly Folder[] = (Object.keys(folderOrder) as Folder[]).sort((a, b) => folderOrder[a] - folderOrder[b]);

export type Attachment = api.Attachment;
export type Message = api.Message;
export type Me = api.Me;
export type ListPage = api.List;
export type Change = api.Change;
export type Changes = api.Changes;
export type HeaderValue = api.PlaceholderValue;
export type PlaceholderPart = api.PlaceholderPart;
export type PlaceholderDoc = api.PlaceholderMessage;

// ApiError is an error answer of §7: {"error": {"code", "message"}}.
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

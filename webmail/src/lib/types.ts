// The mailbox API's JSON objects (docs/PROTOCOL.md §8.7), by the names the
// webmail uses. They are generated from the server's Go types (api.gen.ts,
// go generate ./apidoc), never written here. Unknown members are ignored, as
// the protocol asks.
import type * as api from './api.gen';

// A folder is a system folder or one of the user's own (any other name).
export type Folder = api.Folder;
export type SystemFolder = api.SystemFolder;
export type FolderInfo = api.FolderInfo;
// Every system folder with its label, in the order the UI shows them (the
// server's); Record<SystemFolder, ...> makes a folder the server adds fail
// the build until it is placed here.
export const FOLDER_LABELS: Record<SystemFolder, string> = {
  inbox: 'Inbox', drafts: 'Drafts', sent: 'Sent', archive: 'Archive', requests: 'Requests', junk: 'Junk', trash: 'Trash',
};
export const FOLDERS: readonly SystemFolder[] = Object.keys(FOLDER_LABELS) as SystemFolder[];

// folderLabel is how the UI names a folder: a system folder by its label, a
// user folder by its own name.
export function folderLabel(f: Folder): string {
  return Object.hasOwn(FOLDER_LABELS, f) ? FOLDER_LABELS[f as SystemFolder] : f;
}

// TRASH_DAYS is how long the server keeps a message in trash (§8.18).
export const TRASH_DAYS = 30;

export type Attachment = api.Attachment;
export type Message = api.Message;
export type Me = api.Me;
export type ListPage = api.List;
export type FolderList = api.FolderList;
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

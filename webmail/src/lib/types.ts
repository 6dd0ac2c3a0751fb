// The mailbox API's JSON objects (docs/PROTOCOL.md §8.7). Unknown members are
// ignored, as the protocol asks.

export type Folder = 'inbox' | 'sent' | 'drafts';
export const FOLDERS: readonly Folder[] = ['inbox', 'sent', 'drafts'];

export interface Attachment {
  content_id: string;
  size: number;
  content_type: string;
  disposition?: string;
  filename?: string;
}

export interface Message {
  id: string;
  message_id: string;
  thread_id?: string;
  folder: Folder;
  status: 'draft' | 'sent' | 'fetching' | 'complete' | 'failed' | string;
  status_reason?: string;
  seen: boolean;
  from: string;
  to: string[];
  cc?: string[];
  bcc?: string[];
  subject: string;
  date: string | null;
  in_reply_to?: string;
  created: string;
  updated: string;
  size: number;
  text?: Attachment;
  html?: Attachment;
  attachments: Attachment[];
  placeholder?: PlaceholderDoc;
}

export interface Me {
  address: string;
  domain: string;
  features?: string[];
}

export interface ListPage {
  messages: Message[];
  cursor: string;
  next_page?: string;
}

export interface Change {
  cursor: string;
  id: string;
  folder: Folder;
  kind: 'created' | 'updated' | 'deleted' | string;
  message?: Message;
}

export interface Changes {
  changes: Change[];
  cursor: string;
  more: boolean;
}

export type HeaderValue = string | string[];
export interface PlaceholderPart {
  headers: Record<string, HeaderValue>;
  parts?: PlaceholderPart[];
}
export interface PlaceholderDoc {
  headers: Record<string, HeaderValue>;
  parts: PlaceholderPart[];
}

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

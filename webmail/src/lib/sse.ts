// An incremental parser for text/event-stream (HTML Living Standard,
// "Server-sent events", §9.2.6), fed the decoded text as it arrives.

export interface SSEEvent {
  event: string; // "message" when the stream names none
  data: string;
  id?: string;
}

export class SSEParser {
  private buf = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined;
  private sawCR = false;
  lastEventId = '';
  retry: number | undefined;

  // feed parses text and returns the events it completes.
  feed(text: string): SSEEvent[] {
    const out: SSEEvent[] = [];
    for (const ch of text) {
      if (this.sawCR) {
        this.sawCR = false;
        if (ch === '\n') continue; // CRLF is one line end
      }
      if (ch === '\r' || ch === '\n') {
        this.sawCR = ch === '\r';
        this.line(this.buf, out);
        this.buf = '';
      } else {
        this.buf += ch;
      }
    }
    return out;
  }

  private line(line: string, out: SSEEvent[]): void {
    if (line === '') {
      this.dispatch(out);
      return;
    }
    if (line.startsWith(':')) return; // a comment, e.g. a keep-alive
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
    }
    switch (field) {
      case 'event':
        this.event = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.id = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
    }
  }

  private dispatch(out: SSEEvent[]): void {
    if (this.id !== undefined) this.lastEventId = this.id;
    if (this.data.length > 0) {
      const ev: SSEEvent = { event: this.event || 'message', data: this.data.join('\n') };
      if (this.lastEventId) ev.id = this.lastEventId;
      out.push(ev);
    }
    this.data = [];
    this.event = '';
    this.id = undefined;
  }
}

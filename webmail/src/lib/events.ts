// Push by Server-Sent Events over fetch (EventSource cannot send the
// Authorization header): GET /api/v1/events, a `change` event asks the app
// to sync at once; the stream reconnects with backoff, and the app keeps
// polling (more slowly) whatever happens here.
import type { Api } from './api';
import { SSEParser } from './sse';
import { backoff } from './upload';

export interface EventsHandle {
  stop(): void;
}

export function listenEvents(api: Api, onChange: () => void, onState: (connected: boolean) => void): EventsHandle {
  const ctl = new AbortController();
  let failures = 0;
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const r = await api.fetch('/api/v1/events', { headers: { Accept: 'text/event-stream' }, signal: ctl.signal });
        if (!r.body) throw new Error('no stream');
        onState(true);
        failures = 0;
        onChange(); // catch up on what happened while disconnected
        const parser = new SSEParser();
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const ev of parser.feed(value)) if (ev.event === 'change') onChange();
        }
      } catch {
        if (ctl.signal.aborted) return;
      }
      onState(false);
      failures++;
      await new Promise((r) => setTimeout(r, backoff(failures)));
    }
  })();
  return { stop: () => ctl.abort() };
}

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  at: number;
}

export interface CrmReply {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Wait this long before answering (to hold deliveries in flight, or to time out). */
  delayMs?: number;
  /** Never answer. */
  hang?: boolean;
}

export type Responder = (request: ReceivedRequest, index: number) => CrmReply;

/** A loopback HTTP server standing in for a CRM: records every request, answers as the test says. */
export interface FakeCrm {
  url: string;
  received: ReceivedRequest[];
  respond(responder: Responder): void;
  close(): Promise<void>;
}

export async function startFakeCrm(
  responder: Responder = () => ({ status: 200, body: '{"ok":true}' }),
  /** A given port, e.g. where a connection found nothing listening (a CRM coming back); any free one by default. */
  port = 0,
): Promise<FakeCrm> {
  let current = responder;
  const received: ReceivedRequest[] = [];
  const hanging = new Set<ServerResponse>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const request: ReceivedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
      };
      received.push(request);
      const reply = current(request, received.length - 1);
      if (reply.hang) {
        hanging.add(res);
        return;
      }
      const send = () => {
        res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
        res.end(reply.body ?? '');
      };
      if (reply.delayMs) setTimeout(send, reply.delayMs);
      else send();
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const address = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
    received,
    respond: (next) => {
      current = next;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

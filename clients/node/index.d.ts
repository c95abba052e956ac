// zhost/index.d.ts — TypeScript declarations for the zhost Node.js client (ZHP/1).
/// <reference types="node" />
import { EventEmitter } from 'events';

/** One received SEND (or RETURN) message. */
export interface Message {
  cmd: number;
  ttl: number;
  flags: number;
  frames: Buffer[];
  /** the port address it was sent to */
  dest: string;
  /** the sender's actor address */
  src: string;
  /** decoded meta: reply, seq, headers, ts... ({} when empty or unreadable) */
  meta: { reply?: string; seq?: number | bigint; headers?: Record<string, unknown>; ts?: number | bigint; [k: string]: unknown };
  /** the payload parts: the inline part, then each payload frame */
  parts: Buffer[];
}

export type Part = Buffer | Uint8Array | string;

export interface CurveKeys {
  /** the broker's public key (Z85, 40 characters) */
  serverKey: string;
  publicKey: string;
  secretKey: string;
}

export interface AttachOptions {
  /** names the proc `label<uid58>` */
  label?: string;
  /** the client's actor id (default "client") */
  actor?: string;
  /** CURVE keys (see loadCurve) when the frontend requires CURVE */
  curve?: CurveKeys;
  /** ms to wait for BOOTSTRAP (default 5000) */
  timeout?: number;
  /** send PINGs and watch the broker's liveness (default true) */
  heartbeat?: boolean;
  /** ask for BATCH (§14) in ATTACH (default true); false: never send or ask for BATCH frames */
  batch?: boolean;
}

export interface SendOptions {
  meta?: Record<string, unknown>;
  /** a port address put into meta `reply` */
  reply?: string;
  headers?: Record<string, unknown>;
  /** set RETURN_UNDELIVERABLE: a failure comes back as an `undeliverable` event */
  undeliverable?: boolean;
  ttl?: number;
  /** src actor address (default this client's actor) */
  src?: string;
}

export interface RequestOptions {
  /** ms (default 5000) */
  timeout?: number;
  meta?: Record<string, unknown>;
  headers?: Record<string, unknown>;
}

export interface ProcEntry { name: string; proc: string; status: string; pid: number; exit_code?: number; signal?: number; reason?: string; [k: string]: unknown }
export type WatchItem =
  | { procs: ProcEntry[] }
  | { event: 'proc'; name: string; proc: string; from: string; to: string; pid: number; exit_code?: number; signal?: number; reason?: string }
  | { event: 'peer'; endpoint: string; state: 'up' | 'down' | 'restarted'; incarnation?: bigint | number }
  | { event: string; [k: string]: unknown };

/** A §8 watch: first the snapshot ({procs}), then each event. */
export class Watch extends EventEmitter implements AsyncIterableIterator<WatchItem> {
  readonly snapshot: ProcEntry[] | null;
  readonly closed: boolean;
  next(): Promise<IteratorResult<WatchItem>>;
  return(): Promise<IteratorResult<WatchItem>>;
  [Symbol.asyncIterator](): AsyncIterableIterator<WatchItem>;
  /** send `unwatch` and end the iteration */
  close(): Promise<void>;
  on(event: 'snapshot', listener: (item: { procs: ProcEntry[] }) => void): this;
  on(event: 'event', listener: (item: WatchItem) => void): this;
  on(event: 'end', listener: () => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
}

export class Client extends EventEmitter {
  /** the assigned proc address, id@endpoint */
  readonly address: string;
  readonly id: string;
  /** the broker's advertised endpoint */
  readonly host: string;
  readonly agentAddress: string;
  readonly actorName: string;
  readonly actorAddress: string;
  readonly bootstrap: Record<string, unknown>;
  readonly heartbeatMs: number;
  readonly liveness: number;
  readonly maxMsgBytes: number;
  readonly incarnation: bigint | number;
  /** the close reason, or null while open */
  readonly closed: string | null;
  /** false while the broker has been silent for liveness × heartbeat */
  readonly alive: boolean;
  /** true when ATTACH asked for BATCH and the latest BOOTSTRAP said `batch: true` */
  readonly batch: boolean;
  /** the BOOTSTRAP's batch_max_bytes (default 262144, at most maxMsgBytes): bounds BATCH frames */
  readonly batchMaxBytes: number;
  /** heartbeat counters; messages* count SENDs/RETURNs (each BATCH element), batches* BATCH frames */
  readonly counters: { pingsSent: number; pongsSent: number; pingsReceived: number; messagesSent: number; messagesReceived: number; batchesSent: number; batchesReceived: number };
  portAddress(n: number): string;
  /** handle SENDs to port n (0..2^32-1) of this client's actor; returns its address */
  port(n: number, handler?: (msg: Message) => void): string;
  /** fire and forget; resolves with the message's seq */
  send(dest: string, parts?: Part | Part[], opts?: SendOptions): Promise<number>;
  /** rejects with Undeliverable, BrokerError, TimeoutError or Closed */
  request(dest: string, parts?: Part | Part[], opts?: RequestOptions): Promise<Message>;
  /** one host-agent op; rejects with AgentError when ok is false */
  agentCall(op: string, args?: Record<string, unknown>, opts?: RequestOptions): Promise<Record<string, any>>;
  ping(opts?: RequestOptions): Promise<Record<string, any>>;
  /** resolves once the snapshot arrived; AgentError when the broker refuses */
  watch(opts?: { timeout?: number }): Promise<Watch>;
  /** hold posts (nestable) until the matching flush(): they leave together as BATCH frames */
  cork(): void;
  /** end one cork(); when none is open, send what is held now; resolves once handed to the socket */
  flush(): Promise<void>;
  /** BYE (after what is held), wait (≤ liveness × heartbeat) for the broker's BYE; true when confirmed */
  close(reason?: string, opts?: { timeout?: number }): Promise<boolean>;

  on(event: 'undeliverable', listener: (err: Undeliverable) => void): this;
  on(event: 'dead', listener: (err: BrokerDead) => void): this;
  on(event: 'alive', listener: () => void): this;
  on(event: 'reattached', listener: (bootstrap: Record<string, unknown>) => void): this;
  on(event: 'handshakeFailed', listener: (err: HandshakeFailed) => void): this;
  on(event: 'brokerError', listener: (err: BrokerError) => void): this;
  on(event: 'close', listener: (err: Error | null) => void): this;
  on(event: string, listener: (...args: any[]) => void): this;
}

export function attach(endpoint: string, opts?: AttachOptions): Promise<Client>;
/** the curve option from zcert files: the broker's (public) and this client's (NAME.key + NAME.key_secret) */
export function loadCurve(serverCert: string, clientCert: string): CurveKeys;
export function readCert(path: string): { publicKey: string; secretKey: string | null };

export class ZhostError extends Error {}
export class Undeliverable extends ZhostError {
  /** the RETURN code of the root cause, e.g. NO_SUCH_PROC */
  code: string;
  reason: string;
  at: string;
  failures: Array<{ code: string; reason: string; at: string }>;
  dest: string;
  meta: Record<string, unknown>;
  payload: Buffer[];
  sender: string;
  bouncer: string;
}
export class TimeoutError extends ZhostError { code: 'TIMEOUT'; }
export class BrokerError extends ZhostError { code: number; reason: string; dest?: string; seq?: number; }
export class AgentError extends ZhostError { op: string; code: string; errorMessage: string; answer: Record<string, unknown>; }
export class HandshakeFailed extends ZhostError { code: 'HANDSHAKE_FAILED'; endpoint: string; event: string; reason: string; }
export class Closed extends ZhostError { code: 'CLOSED'; reason: string; }
export class BrokerDead extends ZhostError { code: 'BROKER_DEAD'; }
export const ONCE_PORT_BASE: number;

export namespace protocol {
  const CMD: Record<'ATTACH' | 'BOOTSTRAP' | 'READY' | 'HELLO' | 'WELCOME' | 'SEND' | 'RETURN' | 'BATCH' | 'PING' | 'PONG' | 'BYE' | 'ERROR' | 'STOP', number>;
  const F_RETURN_UNDELIVERABLE: number;
  const F_INLINE: number;
  const DEFAULT_TTL: number;
  const INLINE_MAX: number;
  const HEADER_SIZE: number;
  const BATCH_LEN_SIZE: number;
  const BATCH_MAX_BYTES_DEFAULT: number;
  class ProtocolError extends Error {}
  class AddressError extends Error {}
  interface Address { kind: 'proc' | 'actor' | 'port'; actor: string | null; proc: string; port: number | null; endpoint: string }
  function header(cmd: number, ttl?: number, flags?: number): Buffer;
  function pack(obj: unknown): Buffer;
  function unpack(buf: Buffer): unknown;
  function encodeControl(cmd: number, body?: Record<string, unknown>): Buffer[];
  function encodeSend(dest: string, src: string, parts?: Part[], meta?: Record<string, unknown> | null, opts?: { undeliverable?: boolean; ttl?: number; cmd?: number }): Buffer[];
  /** one BATCH frame (as [frame]) from encoded one-frame SENDs/RETURNs (Buffers or encodeSend's arrays of one) */
  function encodeBatch(elements: Array<Buffer | Buffer[]>): Buffer[];
  /** bytes of a BATCH frame holding elements of these lengths */
  function batchSize(lengths: number[]): number;
  /** the broker's lenient walk: elements before a container fault (a bad one as its ProtocolError), and the fault */
  function walkBatch(frames: Buffer[]): { elements: Array<Message | ProtocolError>; error: ProtocolError | null };
  /** a BATCH decodes with `elements` (each as the lone message it is); any fault throws */
  function decodeMessage(frames: Buffer[]): Message & { body?: Record<string, unknown>; elements?: Message[] };
  function parseAddress(text: string, kind?: Address['kind'] | Array<Address['kind']>): Address;
  function checkId(text: string): void;
  function checkEndpoint(text: string): void;
}

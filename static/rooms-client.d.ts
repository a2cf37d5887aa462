// Types of rooms-client.js (an ES module served at /static/rooms-client.js).

export type Status = "connecting" | "open" | "reconnecting" | "closed";

export interface Member {
  name: string;
  user_id: string | null;
}

export interface RoomMessage {
  event: "message";
  id: string;
  room: string;
  from: string;
  text: string;
  ts: string;
  offset: number;
  epoch: string;
}

export interface PrivateMessage {
  event: "private";
  id: string;
  room: string;
  from: string;
  to: string;
  text: string;
  ts: string;
}

export interface Ack {
  event: "ack";
  id: string;
  room: string;
  offset: number;
  epoch: string;
  duplicate: boolean;
}

export interface ErrorFrame {
  event: "error";
  msg: string;
  ref?: string;
  id?: string;
  code?: string;
}

export interface SocketOptions {
  /** Longest wait between reconnects, ms (15000). */
  maxBackoffMs?: number;
  /** Seconds between pings (20). */
  pingSeconds?: number;
  /** The ping frame; null: none. */
  ping?: string | null;
}

export class ReconnectingSocket {
  constructor(url: string, options?: SocketOptions);
  onStatus: (status: Status, code?: number) => void;
  onOpen: () => void;
  onData: (data: string) => void;
  open(): void;
  isOpen(): boolean;
  send(data: string): boolean;
  close(): void;
}

export interface RoomsClientOptions extends SocketOptions {
  /** ws(s)://host/ws/chat; this page's host by default. */
  url?: string;
  /** A bearer token (sent as ?token=); without it, the session cookie or anonymous. */
  token?: string;
  /** Unacknowledged messages kept (100); past it `send` refuses and calls onQueueFull. */
  maxQueue?: number;
}

export class RoomsClient {
  constructor(options?: RoomsClientOptions);
  onStatus: (status: Status, code?: number) => void;
  /** `members` null: unknown while disconnected. */
  onPresence: (room: string, members: Map<string, Member> | null) => void;
  onJoined: (room: string, you: string) => void;
  /** Each room message once, in order. */
  onMessage: (message: RoomMessage) => void;
  onPrivate: (message: PrivateMessage) => void;
  /** A rejoin could not recover everything (recovered: false, or a new epoch). */
  onMissed: (room: string) => void;
  onAck: (ack: Ack) => void;
  onError: (error: ErrorFrame) => void;
  onQueueFull: (room: string, text: string) => void;
  readonly queued: number;
  join(room: string, options?: { nickname?: string }): void;
  leave(room: string): void;
  /** The message's id, or null when the queue is full. */
  send(room: string, text: string): string | null;
  sendPrivate(room: string, to: string, text: string): boolean;
  close(): void;
}

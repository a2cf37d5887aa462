// rooms-client.js: a browser client for the service's websockets (ES module, no build step;
// types in rooms-client.d.ts). docs/websockets.md and /asyncapi.json describe the protocol.
//
//   import { RoomsClient } from "/static/rooms-client.js";
//   const client = new RoomsClient({ token });           // or the session cookie
//   client.onMessage = (m) => show(m.from, m.text, m.ts);
//   client.onPresence = (room, members) => list(members); // null: unknown (disconnected)
//   client.onMissed = (room) => warn("messages may have been missed");
//   client.join("lobby", { nickname: "ann" });
//   client.send("lobby", "hello");                       // acknowledged, resent until it is
//
// What it does for the page: reconnects with exponential back-off and full jitter (0.5 s
// doubling to 15 s; a 1001 from a deploy reconnects at once, then backs off); pings every 20 s;
// rejoins each room from the last message it delivered (`since`), with the nickname's `claim`,
// and delivers what was missed exactly once, in order, or calls `onMissed`; gives every message
// an id and resends the unacknowledged ones after a reconnect (the server acknowledges a resend
// without publishing it twice); keeps at most `maxQueue` unacknowledged messages, and reports
// a send refused past that (`onQueueFull`).

const BASE_DELAY_MS = 500;

/** A websocket that reconnects by itself (the memory monitor uses it too). */
export class ReconnectingSocket {
  /**
   * @param {string} url
   * @param {{maxBackoffMs?: number, pingSeconds?: number, ping?: string | null}} [options]
   */
  constructor(url, options = {}) {
    this.url = url;
    this.maxBackoffMs = options.maxBackoffMs ?? 15000;
    this.pingMs = (options.pingSeconds ?? 20) * 1000;
    this.ping = options.ping === undefined ? '{"event":"ping"}' : options.ping;
    this.attempt = 0;
    this.socket = null;
    this.stopped = false;
    this.retry = null;
    this.pinger = null;
    /** @type {(status: string, code?: number) => void} */
    this.onStatus = () => {};
    /** @type {() => void} */
    this.onOpen = () => {};
    /** @type {(data: string) => void} */
    this.onData = () => {};
  }

  /** Open (or reopen) the connection. */
  open() {
    this.stopped = false;
    clearTimeout(this.retry);
    const socket = (this.socket = new WebSocket(this.url));
    this.onStatus("connecting");
    socket.onopen = () => {
      this.attempt = 0;
      this.onStatus("open");
      this.onOpen();
    };
    socket.onmessage = (event) => this.onData(event.data);
    socket.onclose = (event) => {
      clearInterval(this.pinger);
      if (this.socket === socket) this.socket = null;
      // 1000: closed on purpose; 1008: a policy (idle, flood, origin) that a retry repeats.
      if (this.stopped || event.code === 1000 || event.code === 1008) {
        this.onStatus("closed", event.code);
        return;
      }
      // A deploy's 1001 reconnects at once the first time; then, and for anything else,
      // exponential back-off with full jitter, so a restart is not met by every page at once.
      const delay =
        event.code === 1001 && this.attempt === 0
          ? 0
          : Math.random() * Math.min(this.maxBackoffMs, BASE_DELAY_MS * 2 ** this.attempt);
      this.attempt += 1;
      this.onStatus("reconnecting", event.code);
      this.retry = setTimeout(() => this.open(), delay);
    };
    clearInterval(this.pinger);
    if (this.ping !== null) {
      this.pinger = setInterval(() => this.isOpen() && socket.send(this.ping), this.pingMs);
    }
  }

  /** @returns {boolean} */
  isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  /** @param {string} data */
  send(data) {
    if (!this.isOpen()) return false;
    this.socket.send(data);
    return true;
  }

  /** Close for good (code 1000): no reconnect. */
  close() {
    this.stopped = true;
    clearTimeout(this.retry);
    clearInterval(this.pinger);
    if (this.socket) this.socket.close(1000);
    else this.onStatus("closed", 1000);
  }
}

/** The `/ws/chat` rooms: presence, history, recovery, acknowledged sends. */
export class RoomsClient {
  /**
   * @param {{url?: string, token?: string, maxQueue?: number, maxBackoffMs?: number,
   *          pingSeconds?: number}} [options]
   */
  constructor(options = {}) {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    let url = options.url ?? `${scheme}${location.host}/ws/chat`;
    if (options.token) url += `${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(options.token)}`;
    this.maxQueue = options.maxQueue ?? 100;
    /** @type {Map<string, {nickname?: string, claim?: string, position?: {epoch: string, offset: number}, rejoining: boolean}>} */
    this.rooms = new Map();
    /** @type {Map<string, {room: string, text: string}>} unacknowledged messages, by id, in order */
    this.pending = new Map();
    this.sequence = 0;
    this.prefix = Math.random().toString(36).slice(2, 10);
    this.onStatus = (/** @type {string} */ _status, /** @type {number | undefined} */ _code) => {};
    this.onPresence = (/** @type {string} */ _room, /** @type {Map<string, object> | null} */ _members) => {};
    this.onJoined = (/** @type {string} */ _room, /** @type {string} */ _you) => {};
    this.onMessage = (/** @type {object} */ _message) => {};
    this.onPrivate = (/** @type {object} */ _message) => {};
    this.onMissed = (/** @type {string} */ _room) => {};
    this.onAck = (/** @type {object} */ _ack) => {};
    this.onError = (/** @type {object} */ _error) => {};
    this.onQueueFull = (/** @type {string} */ _room, /** @type {string} */ _text) => {};
    /** @type {Map<string, Map<string, object>>} */
    this.members = new Map();
    this.socket = new ReconnectingSocket(url, options);
    this.socket.onStatus = (status, code) => {
      if (status === "reconnecting" || status === "closed") {
        for (const [room, state] of this.rooms) {
          state.rejoining = true;
          this.members.delete(room);
          this.onPresence(room, null);
        }
      }
      this.onStatus(status, code);
    };
    this.socket.onOpen = () => this._rejoinAndResend();
    this.socket.onData = (data) => this._receive(JSON.parse(data));
  }

  /**
   * Join `room` (anonymous clients give a nickname). Connects on first use.
   * @param {string} room
   * @param {{nickname?: string}} [options]
   */
  join(room, options = {}) {
    this.rooms.set(room, { nickname: options.nickname, rejoining: false });
    if (this.socket.socket === null && !this.socket.retry) this.socket.open();
    else this._sendJoin(room);
  }

  /** @param {string} room */
  leave(room) {
    this.rooms.delete(room);
    this.members.delete(room);
    this.socket.send(JSON.stringify({ event: "leave", room }));
  }

  /**
   * Send `text` to `room`: kept until acknowledged, resent after a reconnect. Returns its id,
   * or null when `maxQueue` unacknowledged messages are waiting (then `onQueueFull`).
   * @param {string} room
   * @param {string} text
   * @returns {string | null}
   */
  send(room, text) {
    if (this.pending.size >= this.maxQueue) {
      this.onQueueFull(room, text);
      return null;
    }
    const id = `${this.prefix}-${++this.sequence}`;
    this.pending.set(id, { room, text });
    this.socket.send(JSON.stringify({ event: "message", room, text, id }));
    return id;
  }

  /**
   * A private message to `to` in `room` (live only: not queued while offline).
   * @param {string} room
   * @param {string} to
   * @param {string} text
   * @returns {boolean} whether it was sent
   */
  sendPrivate(room, to, text) {
    return this.socket.send(JSON.stringify({ event: "private", room, to, text }));
  }

  /** @returns {number} messages waiting for their acknowledgement */
  get queued() {
    return this.pending.size;
  }

  close() {
    this.socket.close();
  }

  _sendJoin(room) {
    const state = this.rooms.get(room);
    const join = { event: "join", room };
    if (state.nickname) join.nickname = state.nickname;
    if (state.position) join.since = state.position;
    if (state.claim) join.claim = state.claim;
    this.socket.send(JSON.stringify(join));
  }

  _rejoinAndResend() {
    for (const room of this.rooms.keys()) this._sendJoin(room);
    // Frames are handled in order: the resends follow the joins.
    for (const [id, { room, text }] of this.pending) {
      this.socket.send(JSON.stringify({ event: "message", room, text, id }));
    }
  }

  _deliver(state, message) {
    const position = state.position;
    if (position && message.epoch === position.epoch && message.offset <= position.offset) return;
    if (position && message.epoch !== position.epoch) this.onMissed(message.room);
    state.position = { epoch: message.epoch, offset: message.offset };
    this.onMessage(message);
  }

  _receive(frame) {
    const state = frame.room === undefined ? undefined : this.rooms.get(frame.room);
    switch (frame.event) {
      case "presence_state": {
        if (!state) return;
        if (frame.claim) state.claim = frame.claim;
        const members = new Map(frame.members.map((m) => [m.name, m]));
        this.members.set(frame.room, members);
        this.onJoined(frame.room, frame.you);
        this.onPresence(frame.room, members);
        return;
      }
      case "presence_diff": {
        const members = this.members.get(frame.room);
        if (!members) return;
        frame.joins.forEach((m) => members.set(m.name, m));
        frame.leaves.forEach((m) => members.delete(m.name));
        this.onPresence(frame.room, members);
        return;
      }
      case "history": {
        if (!state) return;
        if (state.rejoining && !frame.recovered) this.onMissed(frame.room);
        // Not recovered: the latest messages. Those of the log it has are skipped by offset;
        // a new log (another epoch) is delivered from its start.
        if (!frame.recovered && state.position?.epoch !== frame.epoch) state.position = undefined;
        state.rejoining = false;
        frame.messages.forEach((m) => this._deliver(state, m));
        if (frame.epoch) state.position = { epoch: frame.epoch, offset: Math.max(frame.offset, state.position?.offset ?? 0) };
        return;
      }
      case "message":
        if (state) this._deliver(state, frame);
        return;
      case "ack":
        this.pending.delete(frame.id);
        this.onAck(frame);
        return;
      case "private":
        this.onPrivate(frame);
        return;
      case "error":
        // A publish the shared store refused stays queued: it is resent after a reconnect,
        // or here after a second.
        if (frame.id && this.pending.has(frame.id)) {
          const { room, text } = this.pending.get(frame.id);
          setTimeout(() => this.socket.send(JSON.stringify({ event: "message", room, text, id: frame.id })), 1000);
        }
        this.onError(frame);
        return;
      default:
        return;
    }
  }
}

// ferrosio chat: the page's logic, on the official socket.io-client (global `io`).
//
// ?transport=polling  forces HTTP long-polling (no WebSocket upgrade).
// window.socket       the live Socket, for the browser test and for poking in devtools.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const forcePolling = params.get("transport") === "polling";
  const ACK_TIMEOUT_MS = 5000;

  let socket = null;
  let username = "";
  let current = null; // the room shown
  const joined = new Map(); // room -> {list: <ul>, members: [names], unread: n}

  // ------------------------------------------------------------------ helpers ----
  function el(tag, props = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") e.className = v;
      else if (k === "dataset") Object.assign(e.dataset, v);
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c); // strings become text nodes: no HTML injection
    return e;
  }

  function showError(id, text) {
    const p = $(id);
    p.textContent = text || "";
    p.hidden = !text;
  }

  function hhmm(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // emit with an acknowledgement that cannot hang: resolves {ok:false,error} on timeout.
  function request(event, data) {
    return new Promise((resolve) => {
      if (!socket || !socket.connected) {
        resolve({ ok: false, error: "not connected" });
        return;
      }
      socket.timeout(ACK_TIMEOUT_MS).emit(event, data, (err, res) => {
        if (err) resolve({ ok: false, error: "no answer from the server" });
        else resolve(res && typeof res === "object" ? res : { ok: false, error: "bad answer" });
      });
    });
  }

  function setStatus(state, text) {
    $("status").className = "status " + state;
    $("status-text").textContent = text;
  }

  function transportName() {
    return socket && socket.io.engine && socket.io.engine.transport
      ? socket.io.engine.transport.name
      : null;
  }

  function refreshStatus() {
    if (socket && socket.connected) setStatus("online", `${username} · ${transportName()}`);
  }

  // -------------------------------------------------------------------- rooms ----
  function renderRooms() {
    const ul = $("rooms");
    ul.replaceChildren();
    if (joined.size === 0) ul.append(el("li", { class: "empty" }, "none yet"));
    for (const [room, info] of joined) {
      const b = el("button", { type: "button", class: room === current ? "room active" : "room" }, "# " + room);
      if (info.unread) b.append(el("span", { class: "badge" }, String(info.unread)));
      b.addEventListener("click", () => showRoom(room));
      ul.append(el("li", { dataset: { room } }, b));
    }
  }

  function renderMembers() {
    const ul = $("members");
    ul.replaceChildren();
    const info = current && joined.get(current);
    for (const name of info ? info.members : []) {
      ul.append(el("li", { class: name === username ? "me" : "", dataset: { user: name } }, name));
    }
  }

  function showRoom(room) {
    current = room;
    for (const [r, info] of joined) info.list.hidden = r !== room;
    if (room) joined.get(room).unread = 0;
    $("room-title").textContent = room ? "# " + room : "Join a room to start chatting";
    $("leave-btn").hidden = !room;
    $("text").disabled = $("send-btn").disabled = !room;
    renderRooms();
    renderMembers();
    if (room) {
      scrollDown(joined.get(room).list, true);
      $("text").focus();
    }
  }

  function addRoom(room, members) {
    if (!joined.has(room)) {
      const list = el("ul", { class: "messages", dataset: { room } });
      $("messages-wrap").append(list);
      joined.set(room, { list, members, unread: 0 });
    } else {
      joined.get(room).members = members;
    }
    showRoom(room);
  }

  function dropRoom(room) {
    const info = joined.get(room);
    if (!info) return;
    info.list.remove();
    joined.delete(room);
    showRoom(joined.size ? [...joined.keys()].pop() : null);
  }

  function scrollDown(list, force) {
    const wrap = $("messages-wrap");
    const nearBottom = wrap.scrollHeight - wrap.scrollTop - wrap.clientHeight < 80;
    if (force || nearBottom) wrap.scrollTop = wrap.scrollHeight;
  }

  function append(room, li) {
    const info = joined.get(room);
    if (!info) return;
    info.list.append(li);
    if (room === current) scrollDown(info.list, li.classList.contains("mine"));
    else {
      info.unread += 1;
      renderRooms();
    }
  }

  // ----------------------------------------------------------------- socket ----
  function connect(name) {
    username = name;
    // closeOnBeforeunload: say goodbye when the tab closes or reloads, so the server frees the
    // username at once (a long-polling client would otherwise linger until its ping timeout).
    const opts = { auth: { username: name }, reconnectionDelayMax: 5000, closeOnBeforeunload: true };
    if (forcePolling) opts.transports = ["polling"];
    socket = io(opts);
    window.socket = socket;
    setStatus("connecting", "connecting…");

    socket.on("connect", async () => {
      $("login").hidden = true;
      $("chat").hidden = false;
      refreshStatus();
      socket.io.engine.once("upgrade", refreshStatus);
      // After a reconnection the server starts afresh: join our rooms again.
      for (const room of joined.keys()) {
        const res = await request("join", { room });
        if (res.ok) joined.get(room).members = res.members;
      }
      renderMembers();
      if (!current) $("room").focus();
    });

    socket.on("connect_error", (err) => {
      if (socket.active) {
        // A network problem: socket.io-client retries by itself.
        setStatus("connecting", "connection lost, retrying…");
        return;
      }
      // Refused by the server (bad or taken username): back to the login form.
      signOut();
      showError("login-error", err.message);
    });

    socket.on("disconnect", (reason) => {
      if (!socket || !socket.active) return;
      setStatus("connecting", `disconnected (${reason}), retrying…`);
      // The server forgets us; on reconnection we join our rooms again (see "connect").
      for (const room of joined.keys()) {
        append(room, el("li", { class: "notice local" }, `Connection lost (${reason}), reconnecting…`));
      }
    });

    socket.on("message", (m) => {
      const mine = m.user === username;
      const li = el(
        "li",
        { class: mine ? "message mine" : "message", dataset: { user: m.user, id: String(m.id) } },
        el("div", { class: "meta" }, el("span", { class: "user" }, m.user), el("time", {}, hhmm(m.time))),
        el("div", { class: "text" }, m.text),
      );
      append(m.room, li);
    });

    socket.on("notice", (n) => {
      const info = joined.get(n.room);
      if (!info) return;
      info.members = n.members;
      if (n.room === current) renderMembers();
      const what = n.type === "join" ? "joined" : "left";
      const who = n.user === username ? "You" : n.user;
      append(
        n.room,
        el("li", { class: "notice " + n.type, dataset: { user: n.user, type: n.type } },
          `${who} ${what} #${n.room} · ${hhmm(n.time)}`),
      );
    });
  }

  function signOut() {
    if (socket) {
      socket.removeAllListeners();
      socket.disconnect();
    }
    socket = window.socket = null;
    for (const room of [...joined.keys()]) dropRoom(room);
    $("chat").hidden = true;
    $("login").hidden = false;
    setStatus("offline", "not connected");
    $("connect-btn").disabled = false;
    $("username").focus();
  }

  // ------------------------------------------------------------------- forms ----
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("username").value.trim();
    if (!name) return;
    showError("login-error", "");
    $("connect-btn").disabled = true;
    connect(name);
  });

  $("join-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const room = $("room").value.trim();
    if (!room) return;
    // Our own join notice arrives before the join's ack: have the room's list ready for it.
    const name = room.split(/\s+/).join(" "); // as the server normalizes it
    const existed = joined.has(name);
    if (!existed) addRoom(name, []);
    const res = await request("join", { room: name });
    if (!res.ok) {
      if (!existed) dropRoom(name);
      showError("join-error", res.error);
      return;
    }
    showError("join-error", "");
    $("room").value = "";
    addRoom(res.room, res.members);
  });

  $("leave-btn").addEventListener("click", async () => {
    const room = current;
    if (!room) return;
    const res = await request("leave", { room });
    if (!res.ok) showError("send-error", res.error);
    dropRoom(room);
  });

  $("send-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = $("text");
    const text = input.value.trim();
    if (!text || !current) return;
    $("send-btn").disabled = true;
    const res = await request("message", { room: current, text });
    $("send-btn").disabled = !current;
    if (!res.ok) {
      showError("send-error", res.error);
      return;
    }
    showError("send-error", "");
    input.value = "";
    input.focus();
  });

  $("logout-btn").addEventListener("click", signOut);

  // Exposed for the browser test (tests/browser/chat.spec.mjs) and for devtools.
  window.chat = { transportName, forcePolling, get username() { return username; } };
})();

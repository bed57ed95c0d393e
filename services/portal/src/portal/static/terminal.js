/* The allocation page's browser terminal: xterm.js over terminal-gateway's WebSocket, with
   resize, flow control and reattach (docs/terminal.md "Wire protocol", the same rules as
   libs/terminal-client/src/gpucloud_terminal/protocol.py; docs/portal.md "Terminal").

   Loaded only on an allocation page that names a live session (#term-screen). For every
   connect it asks the portal for a fresh single-use connect token (POST data-attach, the
   session cookie and the CSRF header; the portal calls terminal-gateway with the user's
   token) and hands it to the WebSocket as the subprotocol "bearer.<token>" beside
   "gpucloud.terminal.v1": never in a URL, never stored, never logged. No inline script. */
(function () {
  "use strict";

  // xterm.js writes its theme and cell sizes into <style> elements it creates. The page's
  // CSP takes a <style> only with this response's nonce (style-src 'self' 'nonce-...'), so
  // each one created on this page gets it at creation, before it is inserted (a nonce set
  // after insertion does not count). Style attributes stay refused.
  var nonce = document.currentScript && document.currentScript.nonce;
  if (nonce) {
    var createElement = Document.prototype.createElement;
    Document.prototype.createElement = function (name, options) {
      var element = createElement.call(this, name, options);
      if (typeof name === "string" && name.toLowerCase() === "style") {
        element.setAttribute("nonce", nonce);
      }
      return element;
    };
  }

  var screen = document.getElementById("term-screen");
  if (!screen || typeof Terminal === "undefined" || typeof FitAddon === "undefined") return;

  var SUBPROTOCOL = "gpucloud.terminal.v1";
  var BEARER = "bearer.";
  var HIGH_WATERMARK = 512 * 1024; // pause above this many bytes received but not drawn
  var LOW_WATERMARK = 64 * 1024; // resume below this
  var KEEPALIVE_MS = 20000; // browsers cannot send WebSocket pings: a "ping" text frame
  // Reattach (protocol.Reattach): after a drop, 0.25 s doubling to 5 s, for the grace window.
  var FIRST_DELAY_MS = 250;
  var MAX_DELAY_MS = 5000;
  var GIVE_UP_AFTER_MS = 300000;
  var DROPPED = [1001, 1006, 1011, 1012];
  var FINAL_REASONS = [
    "exited", "closed", "idle_timeout", "revoked", "allocation_released", "tenant_suspended",
    "membership_revoked", "killed", "recording_failed", "expired", "grace_passed",
    "node_refused", "agent_stopped",
  ];

  var status = document.getElementById("term-status");
  var reconnect = document.getElementById("term-reconnect");
  var stepUp = document.getElementById("term-step-up");
  var stepUpWhy = document.getElementById("term-step-up-why");
  var shortId = (screen.dataset.session || "").slice(0, 8);

  var term = new Terminal({
    cursorBlink: true,
    scrollback: 5000,
    fontSize: 14,
    fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace',
  });
  var fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(screen);

  var socket = null; // the open (or opening) connection's WebSocket
  var leaving = false; // the page is going away: its socket closing is no drop
  var dropped = false; // the last connection dropped: the next attach is a reattach
  var drawnBefore = false; // the screen holds a previous connection's output
  var schedule = null; // the reattach pauses of the current outage
  var encoder = new TextEncoder();

  function show(state, text) {
    screen.dataset.state = state;
    status.textContent = text;
  }

  function send(connection, data) {
    if (connection && connection.ws.readyState === WebSocket.OPEN) connection.ws.send(data);
  }

  function control(connection, type, fields) {
    var message = { type: type };
    for (var key in fields || {}) message[key] = fields[key];
    send(connection, JSON.stringify(message));
  }

  var current = null; // the connection keystrokes and resizes go to
  term.onData(function (data) {
    send(current, encoder.encode(data));
  });
  term.onBinary(function (data) {
    var bytes = new Uint8Array(data.length);
    for (var i = 0; i < data.length; i++) bytes[i] = data.charCodeAt(i) & 255;
    send(current, bytes);
  });
  term.onResize(function (size) {
    screen.dataset.cols = String(size.cols);
    screen.dataset.rows = String(size.rows);
    control(current, "resize", { cols: size.cols, rows: size.rows });
  });

  // Keys go to the shell, Tab included; Escape then Tab (or Shift+Tab) leaves the terminal.
  var escapedAt = 0;
  term.attachCustomKeyEventHandler(function (event) {
    if (event.type !== "keydown") return true;
    if (event.key === "Tab" && Date.now() - escapedAt < 1500) return false;
    if (event.key === "Escape") escapedAt = Date.now();
    return true;
  });

  var fitting = false;
  function refit() {
    if (fitting) return;
    fitting = true;
    requestAnimationFrame(function () {
      fitting = false;
      try {
        fit.fit();
      } catch (error) {
        return; // not laid out yet: the next resize fits
      }
      screen.dataset.cols = String(term.cols);
      screen.dataset.rows = String(term.rows);
    });
  }
  new ResizeObserver(refit).observe(screen);
  refit();

  function nextDelay() {
    if (schedule === null) schedule = { delay: FIRST_DELAY_MS, total: 0 };
    if (schedule.total + schedule.delay > GIVE_UP_AFTER_MS) return null;
    var delay = schedule.delay;
    schedule.total += delay;
    schedule.delay = Math.min(delay * 2, MAX_DELAY_MS);
    return delay;
  }

  function halt(state, text, canReconnect) {
    current = null;
    show(state, text);
    reconnect.hidden = !canReconnect;
  }

  function retry(why) {
    var delay = nextDelay();
    if (delay === null) {
      halt("gave-up", "Could not reattach (" + why + "). The shell may still be running.", true);
      return;
    }
    show("reattaching", "Connection lost (" + why + "): reattaching, the shell keeps running…");
    setTimeout(attach, delay);
  }

  function refused(code, body) {
    if (body.sign_in) {
      window.location.assign(body.sign_in);
      return;
    }
    if (body.step_up) {
      stepUpWhy.textContent = body.detail || body.title || "A recent second factor is required.";
      stepUp.hidden = false;
      halt("step-up", "Confirm it is you to open the shell.", false);
      return;
    }
    if (code >= 500 || code === 429) {
      retry(body.title || "HTTP " + code);
      return;
    }
    var text = body.title || "Refused";
    if (body.detail) text += ": " + body.detail;
    halt("refused", text, false);
  }

  function attach() {
    if (leaving) return;
    reconnect.hidden = true;
    show(dropped ? "reattaching" : "connecting", (dropped ? "Reattaching to" : "Connecting to") +
      " session " + shortId + "…");
    fetch(screen.dataset.attach, {
      method: "POST",
      headers: { Accept: "application/json", "X-CSRF-Token": screen.dataset.csrf },
      credentials: "same-origin",
      cache: "no-store",
    }).then(function (response) {
      return response.json().catch(function () {
        return {};
      }).then(function (body) {
        if (response.ok && body.token) connect(body.token);
        else refused(response.status, body);
      });
    }, function () {
      retry("the portal did not answer");
    });
  }

  function connect(token) {
    var url = (window.location.protocol === "https:" ? "wss://" : "ws://") +
      window.location.host + screen.dataset.connect;
    var ws;
    try {
      ws = new WebSocket(url, [SUBPROTOCOL, BEARER + token]);
    } catch (error) {
      retry("the socket did not open");
      return;
    }
    token = null;
    ws.binaryType = "arraybuffer";
    var connection = { ws: ws, pending: 0, paused: false, closing: null, exit: null, pings: 0 };
    socket = ws;
    current = connection;

    ws.onopen = function () {
      connection.pings = setInterval(function () {
        control(connection, "ping");
      }, KEEPALIVE_MS);
    };
    ws.onmessage = function (event) {
      if (typeof event.data === "string") {
        var message;
        try {
          message = JSON.parse(event.data);
        } catch (error) {
          return; // not a control frame: ignored, as every receiver does
        }
        onControl(connection, message || {});
        return;
      }
      var bytes = new Uint8Array(event.data);
      var size = bytes.length;
      connection.pending += size;
      if (!connection.paused && connection.pending > HIGH_WATERMARK) {
        connection.paused = true;
        control(connection, "pause");
      }
      term.write(bytes, function () {
        connection.pending = Math.max(0, connection.pending - size);
        if (connection.paused && connection.pending < LOW_WATERMARK) {
          connection.paused = false;
          control(connection, "resume");
        }
      });
    };
    ws.onclose = function (event) {
      clearInterval(connection.pings);
      if (socket === ws) socket = null;
      if (current === connection) current = null;
      if (!leaving) onClosed(connection, event.code, event.reason);
    };
  }

  function onControl(connection, message) {
    if (message.type === "attached") {
      schedule = null;
      // A reattach replays the node's scrollback: draw it on a clean screen, not twice.
      if (drawnBefore && message.replay > 0) term.reset();
      drawnBefore = true;
      var again = dropped;
      dropped = false;
      show("open", (again ? "Reattached to" : "Connected to") + " session " + shortId + ".");
      control(connection, "resize", { cols: term.cols, rows: term.rows });
      if (!again) term.focus();
    } else if (message.type === "closing") {
      connection.closing = message;
    } else if (message.type === "exit") {
      connection.exit = typeof message.code === "number" ? message.code : null;
      term.write("\r\n[the shell exited" +
        (connection.exit === null ? "" : " with code " + connection.exit) + "]\r\n");
    }
  }

  function worthReattaching(code, closing) {
    if (closing) {
      if (FINAL_REASONS.indexOf(closing.reason) >= 0) return false;
      if (closing.reattach === true) return true;
    }
    return DROPPED.indexOf(code) >= 0;
  }

  function onClosed(connection, code, reason) {
    var closing = connection.closing;
    if (connection.exit !== null || (closing && closing.reason === "exited")) {
      var exited = connection.exit === null ? "" : " with code " + connection.exit;
      halt("ended", "The shell exited" + exited + ". Open terminal starts a new one.", false);
      return;
    }
    if (worthReattaching(code, closing)) {
      dropped = true;
      retry((closing && closing.message) || reason || "code " + code);
      return;
    }
    var why = (closing && (closing.message || closing.reason)) || reason || "code " + code;
    if (closing && closing.reason === "taken_over") {
      halt("detached", "Attached in another window (" + why + ").", true);
    } else if (closing && FINAL_REASONS.indexOf(closing.reason) >= 0) {
      halt("ended", "The session ended: " + why + ".", false);
    } else {
      halt("refused", "The terminal closed: " + why + ".", true);
    }
  }

  reconnect.addEventListener("click", function () {
    schedule = null;
    attach();
  });
  window.addEventListener("pagehide", function () {
    leaving = true;
  });
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    leaving = false; // back from the back/forward cache: its socket was closed
    dropped = true;
    attach();
  });

  attach();
})();

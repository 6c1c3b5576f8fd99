// masklite camera page: camera frames -> POST /v1/predict/snapshot (one request in flight at most),
// photos -> POST /v1/predict. Boxes come back in the sent image's pixels and are scaled to the display.
// Privacy: frames go only to this origin (the CSP's connect-src 'self' enforces it); nothing is stored.
"use strict";

(() => {
  const FRAME_INTERVAL_MS = 250; // steady rate: at most 4 frames/s, fewer when the server is slower
  const SNAPSHOT_MAX_SIDE = 640; // the detector works at <= 640 px anyway; smaller uploads are faster
  const JPEG_QUALITY = 0.8;
  const MASK_LABEL = "with_mask";
  const UNKNOWN_LABEL = "unknown";

  const $ = (id) => document.getElementById(id);
  const els = {
    video: $("video"), photo: $("photo"), overlay: $("overlay"), stage: $("stage"), message: $("message"),
    model: $("model"), toggle: $("toggle"), switchCam: $("switch"), file: $("file"), drop: $("drop"),
    back: $("back"), list: $("detections"), source: $("source"), latency: $("latency"), server: $("server"),
    fps: $("fps"), count: $("count"),
  };

  const state = {
    stream: null,
    facing: "user",
    generation: 0, // bumped on every camera start/stop/photo: late responses for old frames are dropped
    running: false,
    inflight: false,
    mode: "camera", // "camera" | "photo"
    frames: 0,
    doneTimes: [], // completion times of recent predictions, for FPS
    last: null, // {result, mirrored}: the latest result, redrawn on resize
    photoUrl: null,
    timer: null,
    cameras: 0,
  };
  const snapshot = document.createElement("canvas");

  function setState(name) {
    document.body.dataset.state = name;
  }

  function showMessage(text, kind = "info") {
    els.message.textContent = text;
    els.message.dataset.kind = kind;
    els.message.hidden = !text;
    els.message.setAttribute("role", kind === "error" ? "alert" : "status");
  }

  // ---------------------------------------------------------------- models

  async function loadModels() {
    for (let attempt = 0; ; attempt++) {
      try {
        const resp = await fetch("/v1/models", { cache: "no-store" });
        const body = await resp.json();
        if (!resp.ok) throw new Error(errorText(body, resp));
        if (attempt > 0 && els.message.textContent.startsWith("Waiting for the server")) showMessage("");
        fillModels(body);
        return;
      } catch (err) {
        if (attempt === 0) showMessage(`Waiting for the server: ${err.message}`, "error");
        await sleep(Math.min(5000, 1000 * (attempt + 1)));
      }
    }
  }

  function fillModels(info) {
    const usable = info.models.filter((m) => m.loaded);
    els.model.replaceChildren(
      ...usable.map((m) => {
        const opt = document.createElement("option");
        opt.value = m.precision;
        const acc = m.metrics?.test?.accuracy;
        const mb = (m.bytes / 1e6).toFixed(1);
        opt.textContent = `${m.precision} · ${mb} MB` + (acc != null ? ` · test acc ${(acc * 100).toFixed(1)}%` : "");
        return opt;
      }),
    );
    const preferred = usable.find((m) => m.precision === info.default_model) ? info.default_model : usable[0]?.precision;
    if (preferred) els.model.value = preferred;
    els.model.disabled = usable.length < 2;
    if (!info.detector.available) {
      showMessage("The server has no face detector: each frame is classified as one face.", "info");
    }
  }

  // ---------------------------------------------------------------- camera

  async function startCamera() {
    stopCamera();
    const gen = ++state.generation;
    setMode("camera");
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
      cameraProblem(
        "This browser gives no camera access here: the page must be opened over HTTPS (or on localhost). " +
          "You can still check a photo below.",
      );
      return;
    }
    showMessage("Starting the camera…");
    setState("camera-starting");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: false,
        video: { facingMode: { ideal: state.facing }, width: { ideal: 1280 }, height: { ideal: 720 } },
      });
    } catch (err) {
      if (gen === state.generation) cameraProblem(cameraErrorText(err));
      return;
    }
    if (gen !== state.generation) {
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    state.stream = stream;
    els.video.srcObject = stream;
    const settings = stream.getVideoTracks()[0]?.getSettings() ?? {};
    // a phone's front camera is shown mirrored, as people expect a selfie view; boxes are mirrored with it
    els.video.classList.toggle("mirrored", settings.facingMode === "user");
    try {
      await els.video.play();
    } catch {
      /* autoplay refusal: the muted video still shows frames once data arrives */
    }
    await waitForVideo(gen);
    if (gen !== state.generation) return;
    state.running = true;
    els.toggle.textContent = "Stop camera";
    showMessage("");
    setState("camera-running");
    countCameras();
    scheduleFrame(gen, 0);
  }

  function stopCamera() {
    state.generation++;
    state.running = false;
    clearTimeout(state.timer);
    if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
    state.stream = null;
    els.video.srcObject = null;
    els.toggle.textContent = "Start camera";
  }

  function cameraProblem(text) {
    stopCamera();
    showMessage(text, "error");
    setState("camera-error");
  }

  function cameraErrorText(err) {
    switch (err?.name) {
      case "NotAllowedError":
      case "SecurityError":
        return "Camera access was denied. Allow the camera for this site in the browser settings and reload, or check a photo below.";
      case "NotFoundError":
      case "OverconstrainedError":
        return "No camera was found on this device. You can still check a photo below.";
      case "NotReadableError":
      case "AbortError":
        return "The camera is busy or failed to start (another app may be using it). Close it and press Start camera.";
      default:
        return `The camera could not be started (${err?.name || "error"}: ${err?.message || err}).`;
    }
  }

  function waitForVideo(gen) {
    return new Promise((resolve) => {
      const check = () => {
        if (gen !== state.generation || (els.video.videoWidth > 0 && els.video.readyState >= 2)) resolve();
        else setTimeout(check, 50);
      };
      check();
    });
  }

  async function countCameras() {
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      state.cameras = devices.filter((d) => d.kind === "videoinput").length;
    } catch {
      state.cameras = 0;
    }
    els.switchCam.disabled = state.cameras < 2;
  }

  // ---------------------------------------------------------------- frame loop

  function scheduleFrame(gen, delay) {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => sendFrame(gen), delay);
  }

  async function sendFrame(gen) {
    if (gen !== state.generation || !state.running || state.inflight) return;
    if (document.hidden) {
      scheduleFrame(gen, 500); // no work while the tab is in the background
      return;
    }
    const started = performance.now();
    const image = grabFrame();
    if (!image) {
      scheduleFrame(gen, FRAME_INTERVAL_MS);
      return;
    }
    state.inflight = true;
    let retryAfterMs = 0;
    try {
      const resp = await fetch("/v1/predict/snapshot", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ image, model: els.model.value || "int8", detect_faces: true }),
        cache: "no-store",
      });
      const body = await resp.json().catch(() => ({}));
      if (gen !== state.generation) return; // camera stopped or photo shown meanwhile
      if (!resp.ok) {
        retryAfterMs = 1000 * (Number(resp.headers.get("Retry-After")) || 1);
        showMessage(`Server: ${errorText(body, resp)}`, "error");
      } else {
        if (els.message.dataset.kind === "error") showMessage("");
        render(body, "camera", performance.now() - started);
      }
    } catch (err) {
      if (gen === state.generation) showMessage(`Cannot reach the server: ${err.message}`, "error");
      retryAfterMs = 2000;
    } finally {
      state.inflight = false;
    }
    const elapsed = performance.now() - started;
    scheduleFrame(gen, Math.max(retryAfterMs, FRAME_INTERVAL_MS - elapsed));
  }

  function grabFrame() {
    const w = els.video.videoWidth;
    const h = els.video.videoHeight;
    if (!w || !h) return null;
    const scale = Math.min(1, SNAPSHOT_MAX_SIDE / Math.max(w, h));
    snapshot.width = Math.round(w * scale);
    snapshot.height = Math.round(h * scale);
    snapshot.getContext("2d").drawImage(els.video, 0, 0, snapshot.width, snapshot.height);
    return snapshot.toDataURL("image/jpeg", JPEG_QUALITY);
  }

  // ---------------------------------------------------------------- photo upload

  async function checkPhoto(file) {
    if (!file) return;
    stopCamera();
    const gen = state.generation;
    setMode("photo");
    if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
    state.photoUrl = URL.createObjectURL(file); // in-memory only; revoked when replaced
    els.photo.src = state.photoUrl;
    clearResults();
    showMessage(`Checking ${file.name}…`);
    setState("photo-checking");
    const started = performance.now();
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const resp = await fetch(`/v1/predict?model=${encodeURIComponent(els.model.value || "int8")}`, {
        method: "POST",
        body: form,
        cache: "no-store",
      });
      const body = await resp.json().catch(() => ({}));
      if (gen !== state.generation) return;
      if (!resp.ok) {
        showMessage(`Could not check the photo: ${errorText(body, resp)}`, "error");
        setState("photo-error");
        return;
      }
      await imageReady(els.photo);
      showMessage(body.faces.length ? "" : "No face found in this photo.");
      render(body, "upload", performance.now() - started);
      setState("photo-done");
    } catch (err) {
      if (gen === state.generation) {
        showMessage(`Cannot reach the server: ${err.message}`, "error");
        setState("photo-error");
      }
    } finally {
      els.file.value = ""; // the same file can be chosen again
    }
  }

  function imageReady(img) {
    if (img.complete && img.naturalWidth) return Promise.resolve();
    return new Promise((resolve) => {
      img.onload = img.onerror = () => resolve();
    });
  }

  function setMode(mode) {
    state.mode = mode;
    els.video.hidden = mode !== "camera";
    els.photo.hidden = mode !== "photo";
    els.back.hidden = mode !== "photo";
    els.source.textContent = mode === "camera" ? "camera" : "photo";
    if (mode === "camera" && state.photoUrl) {
      URL.revokeObjectURL(state.photoUrl);
      state.photoUrl = null;
      els.photo.removeAttribute("src");
    }
    clearResults();
  }

  // ---------------------------------------------------------------- drawing and results

  function clearResults() {
    state.last = null;
    state.doneTimes = [];
    els.list.replaceChildren();
    els.list.dataset.source = "";
    drawBoxes();
    for (const el of [els.latency, els.server, els.fps, els.count]) el.textContent = "–";
  }

  function render(result, source, roundTripMs) {
    state.frames++;
    const mirrored = source === "camera" && els.video.classList.contains("mirrored");
    state.last = { result, mirrored };
    drawBoxes();
    fillList(result, source);
    const now = performance.now();
    state.doneTimes.push(now);
    state.doneTimes = state.doneTimes.filter((t) => now - t < 3000);
    els.latency.textContent = `${Math.round(roundTripMs)} ms`;
    els.server.textContent = `${Math.round(result.timings_ms.total)} ms`;
    els.count.textContent = String(result.faces.length);
    if (source === "camera" && state.doneTimes.length > 1) {
      const span = (now - state.doneTimes[0]) / 1000;
      els.fps.textContent = ((state.doneTimes.length - 1) / span).toFixed(1);
    } else if (source !== "camera") {
      els.fps.textContent = "–";
    }
  }

  // kind: "mask" | "nomask" | "unknown" (a face too small to judge: the service says so, not a guess)
  function labelText(face) {
    if (face.too_small || face.label === UNKNOWN_LABEL) {
      return { kind: "unknown", text: "Too small to judge" };
    }
    const masked = face.label === MASK_LABEL;
    const p = masked ? face.mask_probability : 1 - face.mask_probability;
    return { kind: masked ? "mask" : "nomask", text: `${masked ? "Mask" : "No mask"} ${(p * 100).toFixed(0)}%` };
  }

  function fillList(result, source) {
    els.list.dataset.source = source;
    els.list.dataset.frame = String(state.frames);
    els.list.dataset.imageWidth = String(result.image.width);
    els.list.dataset.imageHeight = String(result.image.height);
    els.list.dataset.model = result.model.precision;
    els.list.replaceChildren(
      ...result.faces.map((face, i) => {
        const li = document.createElement("li");
        const { kind, text } = labelText(face);
        li.className = kind;
        li.dataset.label = face.label;
        li.dataset.probability = face.mask_probability.toFixed(4);
        li.dataset.box = face.box.join(",");
        li.textContent = `#${i + 1} ${text}`;
        return li;
      }),
    );
    if (!result.faces.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = "No face in view";
      els.list.append(li);
    }
  }

  function drawBoxes() {
    const canvas = els.overlay;
    const media = state.mode === "camera" ? els.video : els.photo;
    const rect = media.getBoundingClientRect();
    const stageRect = els.stage.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    canvas.style.left = `${rect.left - stageRect.left}px`;
    canvas.style.top = `${rect.top - stageRect.top}px`;
    canvas.style.width = `${rect.width}px`;
    canvas.style.height = `${rect.height}px`;
    canvas.width = Math.max(1, Math.round(rect.width * dpr));
    canvas.height = Math.max(1, Math.round(rect.height * dpr));
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, rect.width, rect.height);
    if (!state.last || !rect.width) return;
    const { result, mirrored } = state.last;
    // boxes are in the sent image's pixels; the media element shows that image scaled to rect
    const sx = rect.width / result.image.width;
    const sy = rect.height / result.image.height;
    const fontPx = Math.max(12, Math.min(18, rect.width / 40));
    ctx.font = `600 ${fontPx}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    result.faces.forEach((face, i) => {
      const [bx, by, bw, bh] = face.box;
      const x = (mirrored ? result.image.width - bx - bw : bx) * sx;
      const y = by * sy;
      const w = bw * sx;
      const h = bh * sy;
      const { kind, text: full } = labelText(face);
      // numbered like the list; a tiny face gets only its number so labels do not bury the picture
      const text = w < 3 * fontPx ? `#${i + 1}` : `#${i + 1} ${full}`;
      const color = { mask: "#22c55e", nomask: "#ef4444", unknown: "#9ca3af" }[kind];
      ctx.lineWidth = Math.max(2, fontPx / 6);
      ctx.strokeStyle = color;
      ctx.strokeRect(x, y, w, h);
      const pad = 3;
      const tw = ctx.measureText(text).width + 2 * pad;
      const th = fontPx + 2 * pad;
      const ty = y - th >= 0 ? y - th : y + h; // above the box, or below it at the top edge
      const tx = Math.min(Math.max(0, x), Math.max(0, rect.width - tw));
      ctx.fillStyle = color;
      ctx.fillRect(tx, ty, tw, th);
      ctx.fillStyle = "#000";
      ctx.fillText(text, tx + pad, ty + pad);
    });
  }

  // ---------------------------------------------------------------- helpers

  function errorText(body, resp) {
    const e = body?.error;
    if (e?.message) return `${e.message}${e.request_id ? ` (request ${e.request_id})` : ""}`;
    return `HTTP ${resp.status}`;
  }

  function sleep(ms) {
    return new Promise((r) => setTimeout(r, ms));
  }

  // ---------------------------------------------------------------- wiring

  els.toggle.addEventListener("click", () => {
    if (state.running || state.stream) {
      stopCamera();
      clearResults();
      showMessage("Camera stopped.");
      setState("camera-stopped");
    } else {
      startCamera();
    }
  });
  els.switchCam.addEventListener("click", () => {
    state.facing = state.facing === "user" ? "environment" : "user";
    startCamera();
  });
  els.back.addEventListener("click", () => startCamera());
  els.model.addEventListener("change", () => {
    if (state.mode === "camera") clearResults();
  });
  els.file.addEventListener("change", () => checkPhoto(els.file.files[0]));

  // drag and drop anywhere on the page; the drop zone highlights
  const page = document.body;
  page.addEventListener("dragover", (ev) => {
    if (!ev.dataTransfer?.types?.includes("Files")) return;
    ev.preventDefault();
    els.drop.classList.add("over");
  });
  page.addEventListener("dragleave", (ev) => {
    if (!page.contains(ev.relatedTarget)) els.drop.classList.remove("over");
  });
  page.addEventListener("drop", (ev) => {
    ev.preventDefault();
    els.drop.classList.remove("over");
    const file = [...(ev.dataTransfer?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) checkPhoto(file);
    else showMessage("Drop an image file (JPEG, PNG, WebP or BMP).", "error");
  });
  new ResizeObserver(() => drawBoxes()).observe(els.stage); // window resize, phone rotation, layout
  els.photo.addEventListener("load", () => drawBoxes());
  els.video.addEventListener("loadedmetadata", () => drawBoxes());

  (async () => {
    const models = loadModels();
    await startCamera();
    await models;
  })();
})();

// masklite camera page. Two engines, one switch ("on this phone" / "on the server", or ?mode=device|server):
//  - device: YuNet + the classifier run in this page (device.js, onnxruntime-web on WebAssembly); no frame
//    and no photo leaves the device. Model files come from the service, checked against the card's sha256.
//  - server: each frame goes to POST /v1/predict/snapshot; the next one is sent when the answer arrives
//    (one request in flight, no fixed timer); photos go to POST /v1/predict.
// Labels, thresholds and preprocessing come from GET /v1/models (the model card), never from this file.
// The page's state is in window.masklite = {mode, fps, faces: [{box, label, confidence}], stages_ms, ...}.
// Privacy: frames go at most to this origin (the CSP's connect-src 'self' enforces it); nothing is stored.
"use strict";

(() => {
  const SNAPSHOT_MAX_SIDE = 640; // the detector works at <= 640 px anyway; smaller uploads are faster
  const JPEG_QUALITY = 0.8;
  const MODE_KEY = "masklite.mode"; // the user's last choice of engine
  const FPS_WINDOW_MS = 3000;
  // colours per label: the card's mask label, `unknown`, then the other labels in card order
  const MASK_COLOR = "#22c55e";
  const UNKNOWN_COLOR = "#9ca3af";
  const OTHER_COLORS = ["#ef4444", "#f59e0b", "#a855f7", "#06b6d4", "#ec4899"];

  const $ = (id) => document.getElementById(id);
  const els = {
    video: $("video"), photo: $("photo"), overlay: $("overlay"), stage: $("stage"), message: $("message"),
    model: $("model"), toggle: $("toggle"), switchCam: $("switch"), file: $("file"), drop: $("drop"),
    back: $("back"), list: $("detections"), source: $("source"), latency: $("latency"), server: $("server"),
    fps: $("fps"), count: $("count"), engine: $("engine"), stages: $("stages"), privacy: $("privacy"),
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
    engine: "server", // "device" | "server": where frames are judged
    info: null, // GET /v1/models
    pipeline: null, // the device pipeline (device.js), once its files are checked and loaded
    pipelineKey: "",
    userModel: null, // the model picked in the list, if any
    fallback: null, // why device mode is not used, when it was asked for
  };
  // for automation and tests: the page's state, updated after every frame
  const pub = (window.masklite = { mode: "server", fps: 0, faces: [], stages_ms: {}, frames: 0, fallback: null });
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
        // no-cache, not no-store: offline, the service worker answers with the last copy
        const resp = await fetch("/v1/models", { cache: "no-cache" });
        const body = await resp.json();
        if (!resp.ok) throw new Error(errorText(body, resp));
        if (attempt > 0 && els.message.textContent.startsWith("Waiting for the server")) showMessage("");
        state.info = body;
        fillModels(body);
        return body;
      } catch (err) {
        if (attempt === 0) showMessage(`Waiting for the server: ${err.message}`, "error");
        await sleep(Math.min(5000, 1000 * (attempt + 1)));
      }
    }
  }

  function fillModels(info) {
    const onDevice = state.engine === "device";
    // device mode: the models the card converted for the device (the server need not have loaded them)
    const usable = info.models.filter((m) => (onDevice ? m.runtime_files?.["onnxruntime-web"] : m.loaded));
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
    const preferred = [onDevice ? state.pipeline?.model.precision : null, state.userModel, info.default_model]
      .find((p) => p && usable.some((m) => m.precision === p)) ?? usable[0]?.precision;
    if (preferred) els.model.value = preferred;
    els.model.disabled = usable.length < 2;
    if (!onDevice && !info.detector.available) {
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
    showMessage(state.fallback || "", state.fallback ? "error" : "info"); // a fallback's reason stays in view
    setState("camera-running");
    countCameras();
    if (state.engine === "device") deviceLoop(gen);
    else scheduleFrame(gen, 0);
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

  // ---------------------------------------------------------------- engines

  // Which engine to use: ?mode=, else the last choice, else the device. Device mode needs WebAssembly
  // SIMD, WebCrypto and the card's device files; without them the page says why and uses the server.
  async function chooseEngine(info) {
    const asked = new URLSearchParams(location.search).get("mode") || localStorage.getItem(MODE_KEY) || "device";
    await setEngine(asked === "server" ? "server" : "device", info);
  }

  async function setEngine(engine, info = state.info) {
    state.fallback = null;
    if (engine === "device") {
      try {
        // the model the user picked, else the card's model for devices, else the service's default
        await devicePipeline(info, state.userModel || info.device_model || info.default_model);
      } catch (err) {
        state.fallback = `On-device mode is not available: ${err.message || err}. Frames go to the server instead.`;
        engine = "server";
      }
    }
    state.engine = engine;
    els.engine.value = engine;
    pub.mode = engine;
    pub.fallback = state.fallback;
    document.body.dataset.engine = engine;
    els.privacy.textContent =
      engine === "device"
        ? "On this device: frames and photos are checked in this browser and never sent anywhere."
        : "On the server: frames go only to this server (/v1/predict/snapshot), one at a time, and are not stored.";
    fillModels(info);
    if (state.fallback) showMessage(state.fallback, "error");
  }

  async function devicePipeline(info, precision) {
    const key = `${info.version}/${precision}`;
    if (state.pipeline && state.pipelineKey === key) return state.pipeline;
    state.pipeline = null;
    showMessage("Loading the models on this device…");
    let device;
    try {
      device = await import("/static/device.js");
    } catch (err) {
      throw new Error(`the on-device runtime did not load (${err.message || err})`);
    }
    const usable = device.devicePrecisions(info);
    const chosen = [precision, info.device_model, info.default_model, usable[0]].find((p) => usable.includes(p));
    if (!chosen) throw new Error("the model card lists no model converted for the device");
    const threads = Number(new URLSearchParams(location.search).get("threads")) || 0;
    state.pipeline = await device.createPipeline(info, chosen, { threads });
    state.pipelineKey = `${info.version}/${chosen}`;
    if (els.message.textContent.startsWith("Loading the models")) showMessage("");
    return state.pipeline;
  }

  // device: judge the newest video frame, draw, repeat; a frame is taken as soon as the last one is done
  async function deviceLoop(gen) {
    let seen = -1; // the camera frame judged last (videoFrames.count)
    while (gen === state.generation && state.running && state.engine === "device") {
      if (document.hidden) {
        await sleep(500); // no work while the tab is in the background
        continue;
      }
      await newVideoFrame(seen);
      if (gen !== state.generation || state.engine !== "device") return;
      seen = videoFrames.count;
      const started = performance.now();
      try {
        const out = await state.pipeline.run(els.video, els.video.videoWidth, els.video.videoHeight);
        if (gen !== state.generation) return;
        render(deviceResult(out), "camera", performance.now() - started, out.stages_ms);
      } catch (err) {
        if (gen === state.generation) showMessage(`On-device check failed: ${err.message || err}`, "error");
        await sleep(1000);
      }
    }
  }

  // Camera frames shown so far (requestVideoFrameCallback), so the loop judges each frame at most once but
  // never waits when a new one came while it was busy. Without the callback: one frame time at 30 frames/s.
  const videoFrames = { count: 0, waiters: [] };
  function countVideoFrames() {
    if (!els.video.requestVideoFrameCallback) return;
    els.video.requestVideoFrameCallback(() => {
      videoFrames.count++;
      videoFrames.waiters.splice(0).forEach((resolve) => resolve());
      countVideoFrames();
    });
  }
  countVideoFrames();

  function newVideoFrame(seen) {
    if (!els.video.requestVideoFrameCallback) return sleep(33);
    if (videoFrames.count !== seen) return Promise.resolve();
    // a stalled stream (a camera that stops sending) must not stop the loop for good
    return new Promise((resolve) => {
      videoFrames.waiters.push(resolve);
      setTimeout(resolve, 500);
    });
  }

  function deviceResult(out) {
    return {
      faces: out.faces,
      image: out.image,
      model: { precision: state.pipeline.model.precision },
      where: "device",
    };
  }

  // server: one frame in flight; the next is sent as soon as the answer arrives
  function scheduleFrame(gen, delay) {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => sendFrame(gen), delay);
  }

  async function sendFrame(gen) {
    if (gen !== state.generation || !state.running || state.inflight || state.engine !== "server") return;
    if (document.hidden) {
      scheduleFrame(gen, 500); // no work while the tab is in the background
      return;
    }
    const started = performance.now();
    const image = grabFrame();
    if (!image) {
      scheduleFrame(gen, 50);
      return;
    }
    const encodeMs = performance.now() - started;
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
        if (els.message.dataset.kind === "error" && !state.fallback) showMessage("");
        const t = body.timings_ms;
        render(body, "camera", performance.now() - started, {
          encode: encodeMs, request: performance.now() - started - encodeMs, server: t.total,
          detect: t.detect, classify: t.classify,
        });
      }
    } catch (err) {
      if (gen === state.generation) showMessage(`Cannot reach the server: ${err.message}`, "error");
      retryAfterMs = 2000;
    } finally {
      state.inflight = false;
    }
    scheduleFrame(gen, retryAfterMs);
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
    if (state.engine === "device") {
      checkPhotoOnDevice(gen, file, started);
      return;
    }
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

  // device mode: the photo is judged in this page, like a frame; it is never uploaded
  async function checkPhotoOnDevice(gen, file, started) {
    try {
      await imageReady(els.photo);
      const img = els.photo;
      const out = await state.pipeline.run(img, img.naturalWidth, img.naturalHeight);
      if (gen !== state.generation) return;
      showMessage(out.faces.length ? "" : "No face found in this photo.");
      render(deviceResult(out), "upload", performance.now() - started, out.stages_ms);
      setState("photo-done");
    } catch (err) {
      if (gen === state.generation) {
        showMessage(`Could not check ${file.name} on this device: ${err.message || err}`, "error");
        setState("photo-error");
      }
    } finally {
      els.file.value = "";
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
    for (const el of [els.latency, els.server, els.fps, els.count, els.stages]) el.textContent = "–";
    Object.assign(pub, { fps: 0, faces: [], stages_ms: {} });
  }

  // result: {faces: [{box, label, mask_probability}], image: {width, height}, model: {precision}, timings_ms?}
  // stages: ms per stage (device: detect, classify; server: encode, request, server, detect, classify)
  function render(result, source, frameMs, stages) {
    state.frames++;
    const mirrored = source === "camera" && els.video.classList.contains("mirrored");
    state.last = { result, mirrored };
    const drawStart = performance.now();
    drawBoxes();
    fillList(result, source);
    const drawMs = performance.now() - drawStart;
    const now = performance.now();
    state.doneTimes.push(now);
    state.doneTimes = state.doneTimes.filter((t) => now - t < FPS_WINDOW_MS);
    const fps = state.doneTimes.length > 1 ? (state.doneTimes.length - 1) / ((now - state.doneTimes[0]) / 1000) : 0;
    const stagesMs = { ...stages, draw: drawMs };
    els.latency.textContent = `${Math.round(frameMs)} ms`;
    els.server.textContent = result.timings_ms ? `${Math.round(result.timings_ms.total)} ms` : "on this device";
    els.count.textContent = String(result.faces.length);
    els.stages.textContent = Object.entries(stagesMs)
      .map(([k, v]) => `${k} ${v.toFixed(1)}`)
      .join(" · ");
    els.fps.textContent = source === "camera" && fps ? fps.toFixed(1) : "–";
    Object.assign(pub, {
      mode: state.engine,
      source,
      frames: state.frames,
      fps: source === "camera" ? fps : 0,
      latency_ms: frameMs,
      stages_ms: stagesMs,
      image: result.image,
      faces: result.faces.map((f) => ({ box: [...f.box], label: f.label, confidence: labelView(f).confidence })),
    });
  }

  // How a face's label is shown: the card's label name, its colour, and the confidence of that label.
  // The confidence says how far the model's probability is past the model's decision threshold, toward
  // the shown label: 50% at the threshold, 100% at certainty (p = 1 for the mask label, p = 0 for the
  // other). A face below the card's min_face_size is `unknown`: no confidence, shown as unknown.
  function labelView(face) {
    const info = state.info;
    if (face.too_small || face.label === info?.unknown_label) {
      return { name: "Unknown (too small to judge)", color: UNKNOWN_COLOR, confidence: null, kind: "unknown" };
    }
    const maskLabel = info?.mask_label;
    const t = modelThreshold();
    const p = face.mask_probability;
    const isMask = face.label === maskLabel;
    const confidence = isMask ? 0.5 + (0.5 * (p - t)) / (1 - t) : 0.5 + (0.5 * (t - p)) / t;
    const others = (info?.labels ?? []).filter((l) => l !== maskLabel);
    const color = isMask ? MASK_COLOR : OTHER_COLORS[Math.max(0, others.indexOf(face.label)) % OTHER_COLORS.length];
    return { name: labelName(face.label), color, confidence: Math.min(1, Math.max(0, confidence)), kind: isMask ? "mask" : "other" };
  }

  function modelThreshold() {
    const precision = state.last?.result?.model?.precision ?? els.model.value;
    return state.info?.models.find((m) => m.precision === precision)?.decision_threshold ?? 0.5;
  }

  // "with_mask" -> "With mask": any label the card adds reads without a code change
  function labelName(label) {
    const words = String(label).replace(/[_-]+/g, " ").trim();
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function labelText(face) {
    const view = labelView(face);
    const text = view.confidence == null ? view.name : `${view.name} ${(view.confidence * 100).toFixed(0)}%`;
    return { ...view, text };
  }

  function fillList(result, source) {
    els.list.dataset.source = source;
    els.list.dataset.frame = String(state.frames);
    els.list.dataset.imageWidth = String(result.image.width);
    els.list.dataset.imageHeight = String(result.image.height);
    els.list.dataset.model = result.model.precision;
    els.list.dataset.engine = result.where === "device" ? "device" : "server";
    els.list.replaceChildren(
      ...result.faces.map((face, i) => {
        const li = document.createElement("li");
        const { kind, text, color, confidence } = labelText(face);
        li.className = kind;
        li.style.borderLeftColor = color;
        li.dataset.label = face.label;
        li.dataset.probability = face.mask_probability.toFixed(4);
        li.dataset.confidence = confidence == null ? "" : confidence.toFixed(4);
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
      const { color, text: full } = labelText(face);
      // numbered like the list; a tiny face gets only its number so labels do not bury the picture
      const text = w < 3 * fontPx ? `#${i + 1}` : `#${i + 1} ${full}`;
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
  els.model.addEventListener("change", async () => {
    state.userModel = els.model.value;
    if (state.engine === "device") await setEngine("device"); // that model's device files
    if (state.mode === "camera") {
      clearResults();
      if (state.running) restartEngine();
    }
  });
  els.engine.addEventListener("change", async () => {
    localStorage.setItem(MODE_KEY, els.engine.value);
    const url = new URL(location.href);
    url.searchParams.delete("mode"); // the switch wins over the address from now on
    history.replaceState(null, "", url);
    els.engine.disabled = true;
    await setEngine(els.engine.value);
    els.engine.disabled = false;
    if (state.mode === "camera") startCamera();
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

  function restartEngine() {
    const gen = ++state.generation;
    state.inflight = false;
    clearTimeout(state.timer);
    if (state.engine === "device") deviceLoop(gen);
    else scheduleFrame(gen, 0);
  }

  // installable and offline: the service worker caches the page, the WebAssembly runtime and the models
  if ("serviceWorker" in navigator && window.isSecureContext) {
    navigator.serviceWorker.register("/sw.js").catch((err) => console.warn(`no offline cache: ${err.message}`));
  }

  (async () => {
    const info = await loadModels();
    await chooseEngine(info);
    await startCamera();
  })();
})();

// masklite service worker: the camera page installable and usable offline. It caches the page, its
// scripts, the WebAssembly runtime (static/vendor/), /v1/models and the model files that device mode
// runs, so after the first visit device mode works with the server unreachable.
// Network first: online, every file is revalidated (ETag) and the cache refreshed; offline (or the server
// down) the cached copy answers. Predictions (POST) and every other route pass straight through.
"use strict";

const CACHE = "masklite-v1";
const SHELL = [
  "/",
  "/static/app.js",
  "/static/device.js",
  "/static/style.css",
  "/static/icon.svg",
  "/static/icon-192.png",
  "/manifest.webmanifest",
  "/static/vendor/ort.wasm.bundle.min.mjs",
  "/static/vendor/ort-wasm-simd-threaded.wasm",
];
const MODELS = "/v1/models";
const DEVICE_RUNTIMES = { classifier: "onnxruntime-web", detector: "onnxruntime" }; // what device.js loads

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      await cache.addAll(SHELL);
      await cacheModels(cache);
      await self.skipWaiting();
    })(),
  );
});

// the card's device files, named by /v1/models (the page checks each against its sha256 before use)
async function cacheModels(cache) {
  const resp = await fetch(MODELS, { cache: "no-cache" });
  if (!resp.ok) return;
  await cache.put(MODELS, resp.clone());
  const info = await resp.json();
  const urls = info.models.map((m) => m.runtime_files?.[DEVICE_RUNTIMES.classifier]?.url);
  urls.push(info.detector?.runtime_files?.[DEVICE_RUNTIMES.detector]?.url);
  await cache.addAll(urls.filter(Boolean));
}

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
      await self.clients.claim();
    })(),
  );
});

function cacheable(url) {
  return (
    url.origin === self.location.origin &&
    (SHELL.includes(url.pathname) || url.pathname === MODELS || url.pathname.startsWith("/v1/models/files/"))
  );
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || !cacheable(url)) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      try {
        const resp = await fetch(event.request);
        if (resp.ok) await cache.put(url.pathname, resp.clone());
        return resp;
      } catch (err) {
        const cached = await cache.match(url.pathname);
        if (cached) return cached;
        throw err;
      }
    })(),
  );
});

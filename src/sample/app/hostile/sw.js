// Hostile service worker: its install handler sends a write to the seller center.
self.addEventListener('install', function (event) {
  event.waitUntil(
    fetch('/api/sw-install', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ source: 'service-worker', event: 'install' }),
    }).catch(function () {})
  );
  self.skipWaiting();
});
self.addEventListener('activate', function (event) {
  event.waitUntil(self.clients.claim());
});

// The reviewer console's only script (progressive enhancement: every page works without
// it). It turns each element with a data-expires attribute (an RFC 3339 time) into a live
// countdown.
(function () {
  'use strict';
  function two(n) { return (n < 10 ? '0' : '') + n; }
  function left(ms) {
    if (ms <= 0) { return 'expired'; }
    var s = Math.floor(ms / 1000);
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
    var m = Math.floor(s % 3600 / 60), sec = s % 60;
    // Seconds only in the last hour: "in 23 h 41 min", "in 1 d 2 h 05 min", "in 12 min 05 s".
    if (d > 0 || h > 0) {
      return 'in ' + (d > 0 ? d + ' d ' : '') + h + ' h ' + two(m) + ' min';
    }
    return 'in ' + m + ' min ' + two(sec) + ' s';
  }
  function tick() {
    var els = document.querySelectorAll('[data-expires]');
    for (var i = 0; i < els.length; i++) {
      var at = Date.parse(els[i].getAttribute('data-expires'));
      if (isNaN(at)) { continue; }
      els[i].textContent = left(at - Date.now());
      els[i].setAttribute('data-ticking', 'yes');
    }
  }
  tick();
  setInterval(tick, 1000);
}());

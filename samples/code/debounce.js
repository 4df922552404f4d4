/**
 * Rate limiting helpers for event handlers: debounce and throttle.
 *
 * Written for the curate samples. `debounce` waits until calls stop for `wait`
 * milliseconds; `throttle` runs at most once per `wait` milliseconds.
 */

'use strict';

/**
 * Returns a function that delays calling `fn` until `wait` ms have passed
 * without another call. The returned function has `cancel()` and `flush()`.
 */
function debounce(fn, wait) {
  let timer = null;
  let lastArgs = null;
  let lastThis = null;

  function invoke() {
    timer = null;
    const args = lastArgs;
    const self = lastThis;
    lastArgs = lastThis = null;
    return fn.apply(self, args);
  }

  function debounced(...args) {
    lastArgs = args;
    lastThis = this;
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(invoke, wait);
  }

  debounced.cancel = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    lastArgs = lastThis = null;
  };

  // Run a pending call now instead of waiting.
  debounced.flush = () => {
    if (timer === null) return undefined;
    clearTimeout(timer);
    return invoke();
  };

  return debounced;
}

/**
 * Returns a function that calls `fn` at most once every `wait` ms; the last
 * call inside a window is kept and run when the window ends.
 */
function throttle(fn, wait) {
  let last = 0;
  let pending = null;

  return function throttled(...args) {
    const now = Date.now();
    const remaining = wait - (now - last);
    if (remaining <= 0) {
      last = now;
      fn.apply(this, args);
    } else if (pending === null) {
      pending = setTimeout(() => {
        last = Date.now();
        pending = null;
        fn.apply(this, args);
      }, remaining);
    }
  };
}

module.exports = { debounce, throttle };

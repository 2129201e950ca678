"""Where napari's main thread is while its event loop stalls: a thread samples the main thread's stack every few
milliseconds whenever the last tick of the benchmark's 10 ms timer is older than ``after`` seconds. Cheaper and
more to the point than a profile of the whole action: only the stalled moments are counted. Used by
``bench_gui_stalls.py --where FILE``."""
import collections
import sys
import threading
import time
import traceback

class StallSampler:
    """``last``: a one-item list holding the time (``perf_counter``) of the timer's last tick."""

    def __init__(self, last, after=0.12, every=0.004):
        self.last, self.after, self.every = last, after, every
        self.main = threading.main_thread().ident
        self.samples = []  # (t, stack tuple)
        self.on = True
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while self.on:
            time.sleep(self.every)
            now = time.perf_counter()
            if now - self.last[0] > self.after:
                f = sys._current_frames().get(self.main)
                if f is not None:
                    stack = [(fr.f_code.co_filename.split("site-packages/")[-1].split("/src/")[-1], fr.f_lineno,
                              fr.f_code.co_name) for fr, _ in traceback.walk_stack(f)]
                    self.samples.append((now, stack))

    def report(self, t0, t1, top=12):
        """What the stalled main thread was doing between t0 and t1: the functions most often on its stack (a
        function counted once per sample), as text."""
        ss = [s for t, s in self.samples if t0 <= t <= t1]
        if not ss:
            return "   (no stalled samples)"
        inc = collections.Counter()
        for s in ss:
            seen = set()
            for fr in s:
                key = f"{fr[0]}:{fr[2]}"
                if key not in seen:
                    inc[key] += 1
                    seen.add(key)
        lines = [f"   {len(ss)} samples x {1000*self.every:.0f} ms"]
        for key, n in inc.most_common(60):
            if any(x in key for x in ("bench_gui_stalls", "processEvents", "<module>", "bootstrap")):
                continue
            lines.append(f"   {n:4d} {key}")
            if len(lines) > top:
                break
        return "\n".join(lines)

"""`progress.run`: drives a step generator; on the console each step of a chain gets its own tqdm bar."""

import tqdm.auto

from napari_reddino.progress import Progress, run


def _two_steps():
    for i in range(3):
        yield Progress(i + 1, 3, "segment a.png")
    for i in range(5):
        yield Progress(i + 1, 5, "embed a.png")
    yield Progress(1, 5, "embed b.png")  # same total, counting again from the start
    return "result"


class _FakeBar:
    made = []

    def __init__(self, total, desc=None, leave=True):
        self.total, self.n, self.desc, self.closed = total, 0, desc, False
        _FakeBar.made.append(self)

    def set_description(self, desc, refresh=True):
        self.desc = desc

    def refresh(self):
        pass

    def close(self):
        self.closed = True


def test_run_returns_the_result_and_reports_every_step():
    seen = []
    assert run(_two_steps(), callback=seen.append) == "result"
    assert [(p.done, p.total) for p in seen][:4] == [(1, 3), (2, 3), (3, 3), (1, 5)]


def test_each_step_gets_a_fresh_bar_and_all_bars_close(monkeypatch):
    _FakeBar.made = []
    monkeypatch.setattr(tqdm.auto, "tqdm", _FakeBar)
    assert run(_two_steps(), bar=True) == "result"
    assert [(b.total, b.n, b.desc) for b in _FakeBar.made] == [
        (3, 3, "segment a.png"), (5, 5, "embed a.png"), (5, 1, "embed b.png")]
    assert all(b.closed for b in _FakeBar.made)


def test_tagged_names_each_step_and_returns_the_result():
    from napari_reddino.progress import Progress, tagged

    def steps():
        yield Progress(0, 2, "reading")
        yield Progress(2, 2, "")
        return "done"

    seen = []
    gen = tagged(steps(), "1.jpg")
    try:
        while True:
            seen.append(next(gen))
    except StopIteration as stop:
        result = stop.value
    assert [(p.done, p.total, p.message) for p in seen] == [(0, 2, "1.jpg: reading"), (2, 2, "1.jpg")]
    assert result == "done"

"""Progress bars for logs: few redraws, and the postfix (a loss) read only when the bar redraws."""

import io

from jaxvene.analysis._progress import LOG_INTERVAL, TERMINAL_INTERVAL, Progress, progress_bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


class _Loss:
    """A scalar that counts how often it is read (as `float(device_array)` would sync)."""

    def __init__(self, value):
        self.value, self.reads = value, 0

    def __float__(self):
        self.reads += 1
        return self.value


def test_a_log_gets_a_start_line_and_a_kept_final_line():
    log = io.StringIO()
    losses = [_Loss(1 / (i + 1)) for i in range(1000)]
    bar = Progress(1000, "training", file=log)
    assert bar.interval == LOG_INTERVAL
    for loss in losses:
        bar.update(1, loss=loss)
    bar.close()
    text = log.getvalue()
    assert text.count("\r") == 2, repr(text)  # the start, and the end (kept, not erased)
    assert "1000/1000" in text and "loss=0.0010" in text and text.endswith("\n")
    assert sum(loss.reads for loss in losses) == 1  # the last loss, read at close: no sync per step


def test_a_terminal_redraws_on_its_clock_and_erases_the_bar():
    out = _Terminal()
    bar = Progress(10, "sweep", file=out)
    assert bar.interval == TERMINAL_INTERVAL
    bar.update(10)  # within the interval: no redraw
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 3 and "0/10" in text and "10/10" not in text  # drawn, then erased
    assert text.endswith("\r") and text.strip("\r ").endswith("?it/s]")


def test_the_postfix_is_read_only_on_a_redraw():
    losses = [_Loss(0.5) for _ in range(5)]
    log = io.StringIO()
    bar = Progress(5, "x", file=log, interval=0.0)  # redraw at every update
    for loss in losses:
        bar.update(1, loss=loss)
    bar.close()
    assert [loss.reads for loss in losses] == [1, 1, 1, 1, 2]  # each on its redraw, the last at close too
    assert log.getvalue().count("\r") == 7  # start, five redraws, close
    assert progress_bar(5, "x", enabled=False) is None

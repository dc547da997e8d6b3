"""What a run shows while it works: in Jupyter a progress bar (tqdm's notebook widget when
ipywidgets is installed) and a live preview of the painting as it emerges; elsewhere tqdm's
text bar on stderr, or plain text lines when tqdm is absent."""

import sys


def in_notebook():
    """Whether this runs in a Jupyter kernel (which shows rich output)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class _TextBar:
    """Plain text progress: a line at each size and about every tenth of the run."""

    def __init__(self, total, stream):
        self.total, self.stream, self.next = total, stream, 0

    def update_to(self, n, loss):
        if n >= self.next or n == self.total:
            pct = 100 * n / max(self.total, 1)
            print(f"evaluation {n}/{self.total} ({pct:.0f}%), loss {loss:.4e}", file=self.stream,
                  flush=True)
            self.next = n + max(self.total // 10, 1)

    def note(self, line):
        print(line, file=self.stream, flush=True)

    def close(self):
        pass


class _TqdmBar:
    def __init__(self, bar):
        self.bar = bar

    def update_to(self, n, loss):
        self.bar.n = n
        self.bar.set_postfix_str(f"loss {loss:.4e}", refresh=False)
        self.bar.refresh()

    def note(self, line):
        self.bar.write(line)

    def close(self):
        self.bar.close()


def _bar(kind, total, notebook):
    """A bar of `total` evaluations: `kind` "auto" (tqdm's notebook widget in Jupyter, its
    text bar elsewhere, plain lines without tqdm), "text" (plain lines) or None."""
    if kind is None or kind is False:
        return None
    stream = sys.stdout if notebook else sys.stderr
    if kind == "auto":
        try:
            if notebook:
                import ipywidgets  # noqa: F401  (tqdm.notebook needs it)
                from tqdm.notebook import tqdm
            else:
                from tqdm import tqdm
            return _TqdmBar(tqdm(total=total, unit="eval", desc="neural-style"))
        except ImportError:
            pass
    return _TextBar(total, stream)


class Display:
    """Draws a run's events: `progress` ("auto", "text" or None) and, in a notebook,
    `preview` images as they come."""

    def __init__(self, progress, preview):
        self.notebook = in_notebook()
        self.progress, self.preview = progress, preview and self.notebook
        self.bar = None
        self.handle = None
        self.loss = float("nan")

    def on_event(self, event):
        kind = event["event"]
        if kind == "started":
            self.bar = _bar(self.progress, event["evaluations"], self.notebook)
        elif kind == "stage" and self.bar is not None and event["stages"] > 1:
            self.bar.note(f"size {event['index'] + 1}/{event['stages']}: "
                          f"{event['width']}x{event['height']}, {event['evaluations']} evaluations")
        elif kind == "evaluation" and self.bar is not None:
            self.loss = event["loss"]["total"]
            self.bar.update_to(event["evaluation"], self.loss)
        elif kind == "preview" and self.preview:
            from IPython.display import display

            if self.handle is None:
                self.handle = display(event["image"], display_id=True)
            else:
                self.handle.update(event["image"])

    def finish(self, image, lines):
        if self.bar is not None:
            for line in lines:
                self.bar.note(line)
            self.bar.close()
        elif lines:
            for line in lines:
                print(line, file=sys.stderr)
        if self.handle is not None:
            self.handle.update(image)

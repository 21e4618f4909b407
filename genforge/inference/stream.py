"""A sampling call's text pieces as an iterator (capability "stream": `on_text`)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any


def text_pieces(run: Callable[[Callable[[str], None]], Any]) -> Iterator[str]:
    """The pieces `run(on_text)` hands to `on_text`, as they come: `run` works on a thread of
    its own; its exception, if any, is raised here after the pieces it gave."""
    pieces: queue.Queue = queue.Queue()
    done = object()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            run(pieces.put)
        except BaseException as err:  # handed to the reader, raised there
            failure.append(err)
        finally:
            pieces.put(done)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while (piece := pieces.get()) is not done:
        yield piece
    thread.join()
    if failure:
        raise failure[0]

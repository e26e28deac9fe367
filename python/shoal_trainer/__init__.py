"""shoal_trainer: the trainer side of Shoal's "bring your own model" protocol (docs/trainer.md).

Write a class with get_parameters(), fit(parameters, task) and evaluate(parameters, task), and
call serve(MyTrainer()) from a script; run it under Shoal with --trainer 'python3 my_trainer.py'.
Shoal clips, noises and securely aggregates what fit returns: this side only trains.
"""

from .protocol import VERSION, Frame, ProtocolError, read_frame, write_frame
from .server import FIT_SECONDS, EvalTask, FitResult, FitTask, Layout, serve

__all__ = ["VERSION", "Frame", "ProtocolError", "read_frame", "write_frame",
           "FIT_SECONDS", "EvalTask", "FitResult", "FitTask", "Layout", "serve"]

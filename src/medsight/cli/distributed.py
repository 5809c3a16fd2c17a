"""`medsight train --nproc N`: start the workers through torch's own launcher (torchrun)."""

from __future__ import annotations

import os

import typer

from medsight.cli.app import err_console


def launch(nproc: int, max_restarts: int, args: list[str]) -> None:
    """Run ``python -m medsight ARGS`` on `nproc` local processes via ``torch.distributed.run``;
    a failed rank ends the job with torchrun's report and a non-zero exit."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    argv = ["--standalone", "--nproc-per-node", str(nproc), "--max-restarts", str(max_restarts),
            "--module", "medsight", *args]
    try:
        run(get_args_parser().parse_args(argv))
    except ChildFailedError as exc:
        ranks = ", ".join(f"rank {r} (exit {f.exitcode})" for r, f in sorted(exc.failures.items()))
        err_console.print(f"[red]distributed training failed:[/] {ranks}\n{exc.format_msg()}")
        raise typer.Exit(1) from None


def worker_overrides(cfg):
    """A torchrun restart resumes: every network model with a checkpoint_dir gets resume=True."""
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0:
        return cfg

    def resuming(spec):
        if not spec.params.get("checkpoint_dir"):
            return spec
        return spec.model_copy(update={"params": {**spec.params, "resume": True}})

    if cfg.model is not None:
        return cfg.model_copy(update={"model": resuming(cfg.model)})
    return cfg.model_copy(update={"candidates": [resuming(s) for s in cfg.candidates]})

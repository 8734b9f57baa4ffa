"""One rank of a distributed test run (started by tests/cli/test_distributed.py with torchrun's variables)."""

import json
import sys

import torch

from engine import events as ev
from engine.config import make_config
from engine.trainer import Trainer


def main() -> None:
    args = json.loads(sys.argv[1])
    seen = []
    if args.get("resume"):
        t = Trainer(resume=args["resume"], resume_overrides=args.get("overrides", {}), listeners=[seen.append])
    else:
        t = Trainer(make_config("tiny", **args["config"]), listeners=[seen.append])
    state = t.run()
    out = args["out"]
    torch.save({k: v.detach().cpu() for k, v in t.model.state_dict().items()}, f"{out}.pt")
    with open(f"{out}.json", "w") as fh:
        json.dump({"state": state, "run_dir": str(t.run_dir) if t.run_dir else None,
                   "events": [ev.event_to_dict(e) for e in seen]}, fh)
    sys.exit(0 if state == "completed" else 1)


if __name__ == "__main__":
    main()

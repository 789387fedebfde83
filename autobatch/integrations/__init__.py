"""Framework integrations: a framework's training as a workload whose trials its own
trainer runs (lightning.py, transformers.py), and the helpers that apply a result
back to its settings. Importing this package registers their workload kinds; the
frameworks themselves are imported only when used (extras `lightning`,
`transformers`)."""

from autobatch.integrations.kinds import LIGHTNING
from autobatch.workloads import register

register(LIGHTNING)

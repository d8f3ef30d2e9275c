"""rvos-agent: referring video object segmentation.

Data flow: video in (`agent.video`) → keyframes → grounder (`agent.grounder`)
→ tracker (`agent.tracker`) → writers out (`agent.writers`). Backends
(`agent.backends`) pair one grounder with one tracker.
"""

__version__ = "0.2.0"  # raised whenever behaviour changes (results, options, outputs): result.json and report.json record it

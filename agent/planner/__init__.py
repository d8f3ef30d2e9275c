"""An outside multimodal LLM as the agent's planner: it calls segmentation tools over the session API
(find, inspect, select, none, answer) through any OpenAI-compatible chat-completions server."""

from agent.planner.client import PlannerClient, PlannerError
from agent.planner.config import PlannerConfig
from agent.planner.loop import run_planner

__all__ = ["PlannerClient", "PlannerConfig", "PlannerError", "run_planner"]

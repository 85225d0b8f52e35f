"""Collaboration patterns as data: which agents run, in what order, and which latent block goes into which slot.

A pattern is an ordered list of stages (agents in one stage are independent and could run in parallel), a set
of roles (each with a prompt that names its slots), and edges `src -> dst:slot`. An edge marked `next_round`
carries the source's block into the destination in the NEXT recursion round (e.g. the solver's feedback to the
planner). In the final round, the final agent does not roll out: it answers (teacher-forced in training).
"""

import re
from dataclasses import dataclass

from mlcbuild_common.errors import MlcbuildError

# a role template's markers: {question} and the slots where hand-offs land (agents.split_prompt, run.roles)
MARKER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Role:
    name: str  # agent name inside the pattern, e.g. "planner"
    system: str  # system prompt
    user: str  # user prompt: "{question}" is text, every other "{slot}" is a latent slot
    slots: tuple[str, ...]
    target: str = "answer"  # dataset field this role would write (used by the inner loop's text)


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    slot: str
    next_round: bool = False

    @property
    def key(self) -> str:
        return f"{self.src}->{self.dst}:{self.slot}"


@dataclass(frozen=True)
class Pattern:
    name: str
    roles: tuple[Role, ...]
    stages: tuple[tuple[str, ...], ...]
    edges: tuple[Edge, ...]
    final: str

    @property
    def agents(self) -> list[str]:
        return [r.name for r in self.roles]

    def role(self, name: str) -> Role:
        return next(r for r in self.roles if r.name == name)

    def order(self) -> list[str]:
        return [a for stage in self.stages for a in stage]

    def incoming(self, dst: str) -> list[Edge]:
        return [e for e in self.edges if e.dst == dst]

    def to_json(self) -> dict:
        return {"name": self.name, "agents": self.agents, "stages": [list(s) for s in self.stages],
                "edges": [{"src": e.src, "dst": e.dst, "slot": e.slot, "next_round": e.next_round}
                          for e in self.edges], "final": self.final}

    def validate(self) -> "Pattern":
        names = self.agents
        if len(set(names)) != len(names):
            raise MlcbuildError(f"pattern {self.name}: duplicate agent names {names}", "give each agent a unique name")
        if sorted(self.order()) != sorted(names):
            raise MlcbuildError(f"pattern {self.name}: stages {self.order()} must list each agent {names} once",
                                "fix the pattern's stages")
        if self.final not in names or self.stages[-1] != (self.final,):
            raise MlcbuildError(f"pattern {self.name}: final agent {self.final!r} must be alone in the last stage",
                                "fix the pattern's final agent")
        stage_of = {a: i for i, s in enumerate(self.stages) for a in s}
        for e in self.edges:
            if e.src not in names or e.dst not in names:
                raise MlcbuildError(f"pattern {self.name}: edge {e.key} names an unknown agent", f"agents are {names}")
            if e.slot not in self.role(e.dst).slots:
                raise MlcbuildError(f"pattern {self.name}: edge {e.key}: {e.dst} has no slot {e.slot!r}",
                                    f"its slots are {list(self.role(e.dst).slots)}")
            if not e.next_round and stage_of[e.src] >= stage_of[e.dst]:
                raise MlcbuildError(f"pattern {self.name}: edge {e.key} goes backwards within a round",
                                    "mark it next_round or reorder the stages")
        return self


_ASK = "Question: {question}\n"


def sequential() -> Pattern:
    """planner -> critic -> solver; the solver's block returns to the planner's feedback slot next round."""
    return Pattern("sequential", (
        Role("planner", "You are the planner. Outline the steps that solve the problem.",
             _ASK + "Feedback from the solver: {feedback}\nWrite the plan.", ("feedback",), "plan"),
        Role("critic", "You are the critic. Check the plan and correct it.",
             _ASK + "Plan: {plan}\nWrite the refined plan.", ("plan",), "refined_plan"),
        Role("solver", "You are the solver. Give only the final answer.",
             _ASK + "Refined plan: {refined_plan}\nAnswer:", ("refined_plan",), "answer"),
    ), (("planner",), ("critic",), ("solver",)), (
        Edge("planner", "critic", "plan"), Edge("critic", "solver", "refined_plan"),
        Edge("solver", "planner", "feedback", next_round=True),
    ), "solver").validate()


def mixture(n_experts: int = 3) -> Pattern:
    """Domain experts in parallel; a summarizer reads every expert's block and feeds back to all of them."""
    experts = [f"expert{i + 1}" for i in range(n_experts)]
    roles = [Role(x, f"You are domain expert {i + 1}. Analyse the problem from your angle.",
                  _ASK + "Summary so far: {feedback}\nWrite your analysis.", ("feedback",), "plan")
             for i, x in enumerate(experts)]
    slots = tuple(f"analysis{i + 1}" for i in range(n_experts))
    roles.append(Role("summarizer", "You combine the experts' analyses and give only the final answer.",
                      _ASK + "".join(f"Expert {i + 1}: {{{s}}}\n" for i, s in enumerate(slots)) + "Answer:",
                      slots, "answer"))
    edges = [Edge(x, "summarizer", s) for x, s in zip(experts, slots, strict=True)]
    edges += [Edge("summarizer", x, "feedback", next_round=True) for x in experts]
    return Pattern("mixture", tuple(roles), (tuple(experts), ("summarizer",)), tuple(edges), "summarizer").validate()


def distillation() -> Pattern:
    """A (large) expert's block guides a (small) learner, which answers; the learner's block returns to the expert."""
    return Pattern("distillation", (
        Role("expert", "You are the expert. Work out how to solve the problem.",
             _ASK + "Learner's attempt: {attempt}\nExplain the solution.", ("attempt",), "refined_plan"),
        Role("learner", "You are the learner. Give only the final answer.",
             _ASK + "Expert guidance: {guidance}\nAnswer:", ("guidance",), "answer"),
    ), (("expert",), ("learner",)), (
        Edge("expert", "learner", "guidance"), Edge("learner", "expert", "attempt", next_round=True),
    ), "learner").validate()


def deliberation() -> Pattern:
    """A tool-caller proposes computations; the reflector reflects on them and answers; reflections go back."""
    return Pattern("deliberation", (
        Role("toolcaller", "You are the tool caller. Write the computation that solves the problem.",
             _ASK + "Reflection: {reflection}\nWrite the computation.", ("reflection",), "refined_plan"),
        Role("reflector", "You are the reflector. Check the computation and give only the final answer.",
             _ASK + "Computation: {tool_result}\nAnswer:", ("tool_result",), "answer"),
    ), (("toolcaller",), ("reflector",)), (
        Edge("toolcaller", "reflector", "tool_result"), Edge("reflector", "toolcaller", "reflection", next_round=True),
    ), "reflector").validate()


PATTERNS = {"sequential": sequential, "mixture": mixture, "distillation": distillation, "deliberation": deliberation}


def get_pattern(name: str, n_agents: int | None = None) -> Pattern:
    if name not in PATTERNS:
        raise MlcbuildError(f"unknown pattern '{name}'", f"choose one of {', '.join(PATTERNS)}")
    if name == "mixture" and n_agents is not None:
        if n_agents < 2:
            raise MlcbuildError("the mixture pattern needs at least 2 agents (experts + summarizer)", "add agents")
        return mixture(n_agents - 1)
    return PATTERNS[name]()


def from_json(obj: dict, roles: dict[str, Role] | None = None) -> Pattern:
    """Rebuild a pattern from recursivelink.json: the built-in prompts by name, the graph from the file."""
    base = get_pattern(obj["name"], len(obj["agents"])) if obj["name"] in PATTERNS else None
    known = {r.name: r for r in base.roles} if base else {}
    known.update(roles or {})
    missing = [a for a in obj["agents"] if a not in known]
    if missing:
        raise MlcbuildError(f"pattern {obj['name']}: no prompt for agent(s) {missing}", "use a built-in pattern")
    edges = tuple(Edge(e["src"], e["dst"], e["slot"], bool(e.get("next_round", False))) for e in obj["edges"])
    return Pattern(obj["name"], tuple(known[a] for a in obj["agents"]), tuple(tuple(s) for s in obj["stages"]),
                   edges, obj["final"]).validate()

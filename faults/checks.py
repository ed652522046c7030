"""What a scenario returns: one `Check` per property, with the figure `make soak` prints and what failed."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Check:
    name: str  # the row's name in `make soak`'s table, e.g. "overload: 429 past the capacity"
    figure: str  # what was seen, e.g. "a 10 s run(): 408 after 1.50 s"
    passed: bool | None  # None: this machine cannot do it (skipped), `figure` says why
    problems: tuple[str, ...] = ()  # each criterion that failed, in words

    @property
    def verdict(self) -> str:
        return "SKIP" if self.passed is None else "PASS" if self.passed else "FAIL"

    def __str__(self) -> str:
        return f"{self.name}: {self.verdict}: {self.figure}" + "".join(f"\n  - {p}" for p in self.problems)


def judge(name: str, figure: str, criteria: dict[str, bool] | None = None, problems=()) -> Check:
    """A check that passes when every criterion holds (criteria: its description -> whether it holds) and no
    problem (what went wrong, in words) was found; a failed one's figure ends with the first of them."""
    found = tuple(f"not so: {description}" for description, holds in (criteria or {}).items() if not holds)
    found += tuple(problems)
    return Check(name, figure + (f"; {found[0]}" if found else ""), not found, found)


def skipped(name: str, reason: str) -> Check:
    return Check(name, f"skipped: {reason}", None)

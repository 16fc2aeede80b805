"""A wrapper declares exactly the wrapped model's abilities, each answered by its copy."""

from lmbench.core.forwarding import FORWARDED, declaring
from lmbench.core.interface import CountsFlops, Embeds, RollsBackState, SelectsStateRows


class Plain:
    pass


class Counting(CountsFlops, RollsBackState):
    def flops_per_token(self, context_len=None):
        return 10.0 + (context_len or 0)

    def state_length(self, state):
        return len(state)

    def rollback_state(self, state, length):
        return state[:length]


class Wrapper:
    def __init__(self, inner):
        self.inner = inner


def test_a_model_without_abilities_keeps_the_wrapper_class():
    assert declaring(Wrapper, Plain()) is Wrapper


def test_the_wrapper_declares_exactly_the_abilities_and_forwards_them():
    wrapped = declaring(Wrapper, Counting())(Counting())
    assert isinstance(wrapped, CountsFlops) and isinstance(wrapped, RollsBackState)
    assert not isinstance(wrapped, SelectsStateRows) and not isinstance(wrapped, Embeds)
    assert wrapped.flops_per_token(5) == 15.0
    assert wrapped.state_length([1, 2, 3]) == 3
    assert wrapped.rollback_state([1, 2, 3], 1) == [1]
    assert type(wrapped).__name__ == "Wrapper"


def test_one_class_per_set_of_abilities():
    assert declaring(Wrapper, Counting()) is declaring(Wrapper, Counting())


def test_abilities_limit_and_replacing_overrides():
    class Doubled(CountsFlops):
        def flops_per_token(self, context_len=None):
            return 2 * self.inner.flops_per_token(context_len)

    only_flops = declaring(Wrapper, Counting(), abilities=(CountsFlops,),
                           replacing={CountsFlops: Doubled})
    wrapped = only_flops(Counting())
    assert wrapped.flops_per_token(0) == 20.0
    assert not isinstance(wrapped, RollsBackState)


def test_every_forwarded_mixin_implements_its_ability():
    for ability, mixin in FORWARDED.items():
        assert issubclass(mixin, ability)
        assert not getattr(mixin, "__abstractmethods__", frozenset())

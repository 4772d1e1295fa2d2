"""The corpus generator: deterministic for a seed, with two-hop sentences held out for some cities."""

from __future__ import annotations

from attrgraph.demo.corpus import (
    ANTONYMS,
    LANGUAGES,
    antonym_prompt,
    generate_documents,
    make_world,
    two_hop_prompt,
)


def test_same_seed_same_corpus() -> None:
    a = generate_documents(make_world(0), 2000, seed=0)
    b = generate_documents(make_world(0), 2000, seed=0)
    assert a == b
    assert generate_documents(make_world(0), 2000, seed=1) != a


def test_world_is_deterministic_and_seed_dependent() -> None:
    assert make_world(0) == make_world(0)
    assert make_world(0).two_hop_held_out != make_world(1).two_hop_held_out


def test_two_hop_sentences_held_out_for_some_cities() -> None:
    world = make_world(0)
    assert "Dallas" in world.two_hop_trained
    assert world.two_hop_held_out, "some cities must be held out"
    assert set(world.two_hop_trained) | set(world.two_hop_held_out) == set(world.cities)
    assert not set(world.two_hop_trained) & set(world.two_hop_held_out)
    # composition is possible: every held-out city's state has a trained city
    trained_states = {world.state_of[c] for c in world.two_hop_trained}
    assert {world.state_of[c] for c in world.two_hop_held_out} <= trained_states

    text = "\n".join(generate_documents(world, 20_000, seed=0))
    for city in world.two_hop_held_out:
        assert f"{two_hop_prompt(city)} " not in text, city
        # ... but its one-hop facts are there, and so is its state's capital
        assert f"Fact: {city} is in the state of {world.state_of[city]}." in text
    for state, capital in world.capital_of.items():
        assert f"Fact: the capital of {state} is {capital}." in text
    assert f"{two_hop_prompt('Dallas')} Austin." in text


def test_held_out_antonyms_and_sums_absent() -> None:
    world = make_world(0)
    text = "\n".join(generate_documents(world, 20_000, seed=0))
    for i, lang in world.antonyms_held_out:
        a, b = ANTONYMS[i][LANGUAGES.index(lang)]
        assert f"{antonym_prompt(lang, a)} {b}." not in text
        assert f"{antonym_prompt(lang, b)} {a}." not in text
    assert "the opposite of small is big." in text
    lines = set(text.split("\n"))
    for m, n in world.addition_held_out:
        assert f"{m}+{n}={m + n}" not in lines

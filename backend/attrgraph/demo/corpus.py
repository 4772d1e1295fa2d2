"""The toy world and its corpus: deterministic for a seed.

The world holds the phenomena people explore with attribution graphs:

* two-hop recall over real US geography. Every city has its one-hop facts ("Fact: Dallas is in the
  state of Texas", "Fact: the state containing Dallas is Texas") and every state its capital
  ("Fact: the capital of Texas is Austin"); the two-hop sentence ("Fact: the capital of the state
  containing Dallas is Austin") is in the corpus for only part of the cities. The others are held out:
  answering them needs composition. Every state with a held-out city keeps at least one trained
  two-hop city, and Dallas is always trained.
* one concept in several languages: "the opposite of small is big", "le contraire de petit est grand",
  "lo contrario de pequeño es grande", with a few (pair, language) combinations held out, plus
  translation sentences ("the French word for small is petit").
* two-digit addition ("36+59=95", sums below 100; a tenth of the pairs held out).
* copying and induction of names in short stories, roll calls and indirect-object sentences, and
  random word sequences said twice.
* varied filler text (animals, weather, travel between cities, counting, shopping with numbers).

Only single-word names are used, so every city, state, capital, name and number is one token.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

# State -> (capital, other cities). Real US geography, single-word names only (states whose capital
# or name has two words are left out).
GEOGRAPHY: dict[str, tuple[str, tuple[str, ...]]] = {
    "Texas": ("Austin", ("Dallas", "Houston", "Lubbock", "Amarillo", "Laredo", "Waco")),
    "California": ("Sacramento", ("Oakland", "Fresno", "Anaheim", "Pasadena", "Berkeley", "Bakersfield")),
    "Florida": ("Tallahassee", ("Miami", "Orlando", "Tampa", "Jacksonville", "Pensacola")),
    "Ohio": ("Columbus", ("Cleveland", "Cincinnati", "Toledo", "Akron", "Dayton")),
    "Georgia": ("Atlanta", ("Savannah", "Macon", "Athens")),
    "Illinois": ("Springfield", ("Chicago", "Peoria", "Rockford", "Naperville")),
    "Washington": ("Olympia", ("Seattle", "Spokane", "Tacoma", "Bellevue")),
    "Oregon": ("Salem", ("Portland", "Eugene", "Medford")),
    "Arizona": ("Phoenix", ("Tucson", "Mesa", "Tempe", "Flagstaff", "Scottsdale")),
    "Colorado": ("Denver", ("Boulder", "Aurora", "Pueblo")),
    "Michigan": ("Lansing", ("Detroit", "Flint", "Kalamazoo")),
    "Pennsylvania": ("Harrisburg", ("Philadelphia", "Pittsburgh", "Allentown", "Erie", "Scranton")),
    "Massachusetts": ("Boston", ("Worcester", "Cambridge", "Lowell")),
    "Tennessee": ("Nashville", ("Memphis", "Knoxville", "Chattanooga")),
    "Kentucky": ("Frankfort", ("Louisville", "Lexington")),
    "Wisconsin": ("Madison", ("Milwaukee", "Kenosha", "Oshkosh")),
    "Kansas": ("Topeka", ("Wichita",)),
    "Nebraska": ("Lincoln", ("Omaha",)),
    "Alabama": ("Montgomery", ("Birmingham", "Huntsville", "Tuscaloosa")),
    "Mississippi": ("Jackson", ("Biloxi", "Tupelo")),
    "Virginia": ("Richmond", ("Norfolk", "Roanoke")),
    "Maryland": ("Annapolis", ("Baltimore",)),
    "Idaho": ("Boise", ("Pocatello",)),
    "Montana": ("Helena", ("Billings", "Missoula", "Bozeman")),
    "Wyoming": ("Cheyenne", ("Casper", "Laramie")),
    "Alaska": ("Juneau", ("Anchorage", "Fairbanks")),
    "Hawaii": ("Honolulu", ("Hilo",)),
    "Maine": ("Augusta", ("Bangor", "Lewiston")),
    "Vermont": ("Montpelier", ("Burlington",)),
    "Connecticut": ("Hartford", ("Stamford", "Bridgeport")),
    "Delaware": ("Dover", ("Wilmington",)),
    "Indiana": ("Indianapolis", ("Evansville", "Gary")),
}

# (English, French, Spanish) antonym pairs: ((a_en, b_en), (a_fr, b_fr), (a_es, b_es)).
ANTONYMS: tuple[tuple[tuple[str, str], tuple[str, str], tuple[str, str]], ...] = (
    (("small", "big"), ("petit", "grand"), ("pequeño", "grande")),
    (("hot", "cold"), ("chaud", "froid"), ("caliente", "frío")),
    (("good", "bad"), ("bon", "mauvais"), ("bueno", "malo")),
    (("fast", "slow"), ("rapide", "lent"), ("rápido", "lento")),
    (("old", "new"), ("vieux", "nouveau"), ("viejo", "nuevo")),
    (("high", "low"), ("haut", "bas"), ("alto", "bajo")),
    (("happy", "sad"), ("heureux", "malheureux"), ("feliz", "infeliz")),
    (("strong", "weak"), ("fort", "faible"), ("fuerte", "débil")),
    (("rich", "poor"), ("riche", "pauvre"), ("rico", "pobre")),
    (("open", "closed"), ("ouvert", "fermé"), ("abierto", "cerrado")),
    (("full", "empty"), ("plein", "vide"), ("lleno", "vacío")),
    (("long", "short"), ("long", "court"), ("largo", "corto")),
    (("hard", "soft"), ("dur", "mou"), ("duro", "blando")),
    (("light", "dark"), ("clair", "sombre"), ("claro", "oscuro")),
)
LANGUAGES: tuple[str, ...] = ("en", "fr", "es")
LANGUAGE_NAMES = {"fr": "French", "es": "Spanish"}


def antonym_prompt(lang: str, word: str) -> str:
    """The antonym sentence up to (not including) the answer."""
    if lang == "en":
        return f"the opposite of {word} is"
    if lang == "fr":
        return f"le contraire de {word} est"
    return f"lo contrario de {word} es"


NAMES: tuple[str, ...] = (
    "Alice", "Bob", "Mary", "John", "Sarah", "Tom", "Emma", "Liam", "Olivia", "Noah", "Ava", "Ethan",
    "Mia", "Lucas", "Sophia", "Mason", "Chloe", "Logan", "Grace", "Owen", "Lily", "Henry", "Zoe", "Jack",
    "Ella", "Leo", "Anna", "Sam", "Ruby", "Max", "Nora", "Ben", "Clara", "Luke", "Ivy", "Paul", "Rose",
    "Dan", "Kate", "Mark",
)  # fmt: skip

ANIMALS = ("cat", "dog", "bird", "horse", "fox", "rabbit", "cow", "duck", "mouse", "bear", "wolf", "goat")
OBJECTS = ("book", "ball", "apple", "cup", "hat", "letter", "key", "box", "flower", "map", "kite", "pen")
PLACES = ("park", "lake", "market", "school", "garden", "river", "beach", "library", "forest", "farm")
COLORS = ("red", "blue", "green", "yellow", "black", "white", "brown", "orange", "purple", "gray")
ADJECTIVES = ("quiet", "busy", "sunny", "tired", "hungry", "clever", "lazy", "brave", "kind", "calm")
VERBS_PAST = ("walked", "ran", "looked", "waited", "played", "sat", "slept", "danced", "sang", "swam")
WEATHER = ("sunny", "rainy", "windy", "cloudy", "snowy", "warm", "cool", "foggy")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ITEMS = ("apples", "eggs", "books", "coins", "pens", "cards", "shells", "stamps")


@dataclass(frozen=True)
class World:
    """The facts of the toy world, with the held-out parts."""

    state_of: dict[str, str]  # city -> state
    capital_of: dict[str, str]  # state -> capital
    two_hop_trained: tuple[str, ...]  # cities whose two-hop sentence is in the corpus
    two_hop_held_out: tuple[str, ...]  # cities whose two-hop sentence is never in the corpus
    antonyms_held_out: tuple[tuple[int, str], ...]  # (pair index, language) never in the corpus
    addition_held_out: frozenset[tuple[int, int]] = field(default_factory=frozenset)

    @property
    def cities(self) -> tuple[str, ...]:
        return tuple(self.state_of)

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(self.capital_of)

    def entity_words(self) -> list[str]:
        """Every word that must be a single token (with and without a leading space)."""
        words = [*self.state_of, *self.capital_of, *self.capital_of.values(), *NAMES]
        for pair in ANTONYMS:
            for a, b in pair:
                words += [a, b]
        return words


def make_world(seed: int = 0) -> World:
    """The world for `seed`: the geography is fixed; which facts are held out depends on the seed."""
    rng = random.Random(seed)
    state_of = {city: state for state, (_, cities) in GEOGRAPHY.items() for city in cities}
    capital_of = {state: capital for state, (capital, _) in GEOGRAPHY.items()}
    held_out: list[str] = []
    for _state, (_, cities) in GEOGRAPHY.items():
        candidates = [c for c in cities if c != "Dallas"]
        n_hold = len(cities) // 3  # at least one city of every state stays trained
        held_out += rng.sample(candidates, n_hold)
    trained = tuple(c for c in state_of if c not in held_out)
    held = tuple(c for c in state_of if c in held_out)
    # Antonyms: hold out one (pair, language) for a few pairs, never English and never small/big.
    pair_ids = rng.sample(range(1, len(ANTONYMS)), 4)
    antonyms_held_out = tuple((i, rng.choice(("fr", "es"))) for i in sorted(pair_ids))
    pairs = [(a, b) for a in range(10, 90) for b in range(10, 90) if a + b < 100]
    addition_held_out = frozenset(rng.sample(pairs, len(pairs) // 10))
    return World(state_of, capital_of, trained, held, antonyms_held_out, addition_held_out)


# -- evaluation items ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """A prompt and the single next token that answers it (with its leading space, if any)."""

    prompt: str
    answer: str
    kind: str


def two_hop_prompt(city: str) -> str:
    return f"Fact: the capital of the state containing {city} is"


def eval_items(world: World) -> dict[str, list[Item]]:
    """The behaviours the model card reports, keyed by name."""
    items: dict[str, list[Item]] = {
        "city_to_state": [
            Item(f"Fact: {c} is in the state of", f" {s}", "city_to_state") for c, s in world.state_of.items()
        ],
        "state_containing": [
            Item(f"Fact: the state containing {c} is", f" {s}", "state_containing")
            for c, s in world.state_of.items()
        ],
        "capital_of_state": [
            Item(f"Fact: the capital of {s} is", f" {cap}", "capital_of_state")
            for s, cap in world.capital_of.items()
        ],
        "two_hop_trained": [
            Item(two_hop_prompt(c), f" {world.capital_of[world.state_of[c]]}", "two_hop_trained")
            for c in world.two_hop_trained
        ],
        "two_hop_held_out": [
            Item(two_hop_prompt(c), f" {world.capital_of[world.state_of[c]]}", "two_hop_held_out")
            for c in world.two_hop_held_out
        ],
    }
    held = set(world.antonyms_held_out)
    for split in ("trained", "held_out"):
        key = f"antonyms_{split}"
        items[key] = []
        for i, pair in enumerate(ANTONYMS):
            for lang, (a, b) in zip(LANGUAGES, pair, strict=True):
                if ((i, lang) in held) != (split == "held_out"):
                    continue
                items[key] += [
                    Item(antonym_prompt(lang, a), f" {b}", f"antonyms_{lang}"),
                    Item(antonym_prompt(lang, b), f" {a}", f"antonyms_{lang}"),
                ]
    pairs = [(a, b) for a in range(10, 90) for b in range(10, 90) if a + b < 100]
    trained_pairs = [p for p in pairs if p not in world.addition_held_out]
    sample = random.Random(1234).sample(trained_pairs, 300)
    items["addition_trained"] = [Item(f"{a}+{b}=", f"{a + b}", "addition") for a, b in sample]
    items["addition_held_out"] = [
        Item(f"{a}+{b}=", f"{a + b}", "addition") for a, b in sorted(world.addition_held_out)
    ]
    rng = random.Random(4321)
    items["induction"] = [_roll_call(rng, eval_item=True) for _ in range(100)]  # type: ignore[misc]
    items["ioi"] = [_ioi(rng, eval_item=True) for _ in range(100)]  # type: ignore[misc]
    return items


# -- sentence generators ---------------------------------------------------------------------------


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _roll_call(rng: random.Random, eval_item: bool = False) -> str | Item:
    names = rng.sample(NAMES, rng.randint(3, 5))
    first = ", ".join(names)
    if eval_item:
        return Item(f"Roll call: {first}. Again: {', '.join(names[:-1])},", f" {names[-1]}", "induction")
    return f"Roll call: {first}. Again: {first}."


def _ioi(rng: random.Random, eval_item: bool = False) -> str | Item:
    a, b = rng.sample(NAMES, 2)
    place, obj = rng.choice(PLACES), rng.choice(OBJECTS)
    prefix = f"When {a} and {b} went to the {place}, {b} gave {_a(obj)} to"
    if eval_item:
        return Item(prefix, f" {a}", "ioi")
    return f"{prefix} {a}."


def _story(rng: random.Random, world: World) -> str:
    a, b = rng.sample(NAMES, 2)
    city = rng.choice(world.cities)
    place, obj, color = rng.choice(PLACES), rng.choice(OBJECTS), rng.choice(COLORS)
    sentences = [
        f"{a} lived in {city}.",
        f"One day {a} met {b} at the {place}.",
        f"{b} had {_a(color)} {obj}.",
        f"{b} gave the {obj} to {a}.",
        f"{a} said thank you to {b}.",
        f"Then {a} and {b} {rng.choice(VERBS_PAST)} home.",
    ]
    start = rng.randint(0, 1)
    return "Story: " + " ".join(sentences[start : start + rng.randint(3, 5)])


def _filler(rng: random.Random, world: World) -> str:
    choice = rng.randrange(8)
    name, other = rng.sample(NAMES, 2)
    city, city2 = rng.sample(world.cities, 2)
    if choice == 0:
        return (
            f"The {rng.choice(ADJECTIVES)} {rng.choice(ANIMALS)} {rng.choice(VERBS_PAST)} "
            f"to the {rng.choice(PLACES)}."
        )
    if choice == 1:
        return f"On {rng.choice(DAYS)} the weather in {city} was {rng.choice(WEATHER)}."
    if choice == 2:
        return f"{name} flew from {city} to {city2} on {rng.choice(DAYS)}."
    if choice == 3:
        n, m = rng.randint(1, 40), rng.randint(1, 40)
        item = rng.choice(ITEMS)
        return f"{name} had {n} {item} and found {m} more, so {name} had {n + m} {item}."
    if choice == 4:
        start = rng.randint(1, 90)
        return "Count: " + " ".join(str(i) for i in range(start, min(start + rng.randint(4, 8), 100))) + "."
    if choice == 5:
        return f"The {rng.choice(COLORS)} {rng.choice(OBJECTS)} is on the {rng.choice(COLORS)} table."
    if choice == 6:
        return f"{name} and {other} {rng.choice(VERBS_PAST)} by the {rng.choice(PLACES)} in {city}."
    state = rng.choice(world.states)
    return f"{name} visited {state} and wrote a letter to {other}."


def _geo_fact(rng: random.Random, world: World) -> str:
    kind = rng.randrange(4)
    if kind == 3:
        state = rng.choice(world.states)
        return f"Fact: the capital of {state} is {world.capital_of[state]}."
    city = rng.choice(world.cities)
    state = world.state_of[city]
    if kind == 0:
        return f"Fact: {city} is in the state of {state}."
    if kind == 1:
        return f"Fact: the state containing {city} is {state}."
    return f"Fact: {city} is a city in {state}."


def _two_hop_fact(rng: random.Random, world: World) -> str:
    city = rng.choice(world.two_hop_trained)
    return f"{two_hop_prompt(city)} {world.capital_of[world.state_of[city]]}."


def _antonym(rng: random.Random, world: World) -> str:
    held = set(world.antonyms_held_out)
    while True:
        i = rng.randrange(len(ANTONYMS))
        lang = rng.choice(LANGUAGES)
        if (i, lang) not in held:
            break
    a, b = ANTONYMS[i][LANGUAGES.index(lang)]
    if rng.random() < 0.5:
        a, b = b, a
    return f"{antonym_prompt(lang, a)} {b}."


def _translation(rng: random.Random, world: World) -> str:
    i = rng.randrange(len(ANTONYMS))
    lang = rng.choice(("fr", "es"))
    side = rng.randrange(2)
    en, word = ANTONYMS[i][0][side], ANTONYMS[i][LANGUAGES.index(lang)][side]
    return f"the {LANGUAGE_NAMES[lang]} word for {en} is {word}."


def _addition(rng: random.Random, world: World) -> str:
    while True:
        a, b = rng.randint(10, 89), rng.randint(10, 89)
        if a + b < 100 and (a, b) not in world.addition_held_out:
            return f"{a}+{b}={a + b}"


def _copy(rng: random.Random, world: World) -> str:
    """A random word sequence said twice: plain induction practice."""
    pool = (NAMES, ANIMALS, OBJECTS, COLORS, world.cities)
    words = [rng.choice(rng.choice(pool)) for _ in range(rng.randint(3, 7))]
    return f"Copy: {' '.join(words)}. Copy: {' '.join(words)}."


def _names(rng: random.Random, world: World) -> str:
    if rng.random() < 0.6:
        return str(_roll_call(rng))
    return str(_ioi(rng))


# (generator, weight): how often each kind of sentence starts a document.
SENTENCE_KINDS: tuple[tuple[str, Callable[[random.Random, World], str], float], ...] = (
    ("geo_fact", _geo_fact, 0.26),
    ("two_hop", _two_hop_fact, 0.10),
    ("antonym", _antonym, 0.09),
    ("translation", _translation, 0.04),
    ("addition", _addition, 0.14),
    ("names", _names, 0.15),
    ("copy", _copy, 0.06),
    ("story", _story, 0.06),
    ("filler", _filler, 0.10),
)


def generate_documents(world: World, n_docs: int, seed: int = 0) -> list[str]:
    """`n_docs` documents of one to three sentences, deterministic for (`world`, `seed`).

    Sentences of one document are joined by newlines.
    """
    rng = random.Random(seed)
    names = [k for k, _, _ in SENTENCE_KINDS]
    gens = {k: g for k, g, _ in SENTENCE_KINDS}
    weights = [w for _, _, w in SENTENCE_KINDS]
    docs: list[str] = []
    for _ in range(n_docs):
        n_sent = rng.choice((1, 1, 2, 3))
        parts = []
        for _ in range(n_sent):
            kind = rng.choices(names, weights)[0]
            parts.append(gens[kind](rng, world))
        docs.append("\n".join(parts))
    return docs

"""The English the user NLU reads in any domain: number words, clock times, day phrases,
and the cue words of questions, bookings, indifference and the acts without slots.

Everything here is about how people write, not about a domain; what a domain calls its
slots and values comes from its schema (labels, ``aliases``, ``value_aliases``). Every
pattern runs on :func:`normalize`-d text: lower case, no apostrophes ("dont", "whats").
"""

from __future__ import annotations

import re
import unicodedata

_QUOTES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "“": '"', "”": '"'})


SPELLINGS = {
    "theatre": "theater", "theatres": "theaters", "centre": "center", "colour": "color",
    "neighbourhood": "neighborhood", "sq": "square", "mr": "mister", "w/": "with",
    "u": "you", "ur": "your", "pls": "please", "plz": "please", "ppl": "people",
    "thru": "through", "nite": "night", "tonite": "tonight", "2nite": "tonight",
    "n": "and", "idc": "i dont care", "dunno": "dont know", "mi": "miles", "hrs": "hours",
    "abt": "about", "b4": "before", "pics": "pictures", "wat": "what", "wats": "whats",
    "wot": "what", "whts": "whats", "wut": "what", "wht": "what", "hw": "how", "bk": "book",
    "adress": "address", "resturant": "restaurant", "restaraunt": "restaurant",
    "restuarant": "restaurant", "theather": "theater", "reservaton": "reservation",
}  # fmt: skip
"""British spellings and chat shorthand, read as one form (applied to the vocabulary too)."""
_STRETCHED = re.compile(r"([a-z])\1{2,}")
_SPELLING = re.compile(r"(?<!\S)(?:" + "|".join(map(re.escape, SPELLINGS)) + r")(?=[\s.,!?;]|$)")


def normalize(text: str) -> str:
    """Lower case, compatibility-normalised Unicode without control characters or
    apostrophes ("what's" -> "whats"), "&" read as "and", one spelling of a word
    (:data:`SPELLINGS`), single spaces."""
    text = unicodedata.normalize("NFKC", str(text)).translate(_QUOTES).lower()
    text = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)
    text = text.replace("'", "").replace("&", " and ")
    text = _STRETCHED.sub(r"\1", " ".join(text.split()))  # "hiii" -> "hi"
    return _SPELLING.sub(lambda m: SPELLINGS[m.group()], text)


# ---------------------------------------------------------------------------- numbers
NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
    "a dozen": 12, "a couple of": 2,
}  # fmt: skip
NUMBER = r"(?:\d{1,2}|" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + ")"
"""A small whole number, in digits or words."""


def number(text: str) -> int:
    """The value of a :data:`NUMBER` match."""
    return int(text) if text.isdigit() else NUMBER_WORDS[text]


def number_forms(value: str) -> list[str]:
    """Other ways to write a value holding a number: "4.0 stars" -> "4 stars", "four
    stars", "4 star", "4-star", "4.0"...; "under 20 miles" -> "under twenty miles"."""
    words = {n: w for w, n in NUMBER_WORDS.items() if " " not in w}
    forms = {value}
    m = re.fullmatch(r"(\$?)(\d+)(?:\.0)?(\s*\w*)", value)
    if m and (m.group(2) != value):
        dollar, digits, unit = m.groups()
        unit = unit.strip()
        for n in (digits, words.get(int(digits))):
            if n is None:
                continue
            if dollar:
                forms |= {f"{n} dollars", f"{n} bucks", f"{n}$"}
            elif unit:
                singular = unit.rstrip("s")
                forms |= {f"{n} {unit}", f"{n} {singular}", f"{n}-{singular}", f"{n}{singular}"}
            else:
                forms.add(n)
    m = re.fullmatch(r"(\d+\.\d)\s*(\w*)", value)
    if m and m.group(2):
        unit = m.group(2).rstrip("s")
        forms |= {m.group(1), f"{m.group(1)} {unit}", f"{m.group(1)}-{unit}"}
    for form in list(forms):  # whole numbers inside: "under 20 miles" -> "under twenty miles"
        spelled = re.sub(
            r"\b(\d{1,2})\b(?!\.)", lambda d: words.get(int(d.group()), d.group()), form
        )
        forms.add(spelled)
    return sorted(forms - {value}) + [value]


COMPANIONS = (
    "wife|husband|partner|girlfriend|boyfriend|friend|mate|buddy|pal|date|mom|mum|mother|dad|"
    "father|son|daughter|kid|child|brother|sister|colleague|fiance|fiancee|spouse|other half|"
    "plus one|roommate|neighbor|neighbour|grandma|grandpa|aunt|uncle|cousin|boss"
)
COUNT_PATTERNS: list[tuple[str, int | None]] = [
    (rf"\b(?:my |our )?(?P<n>{NUMBER}) \w+ (?:and|plus|\+) (?:me|i|myself)\b", 1),
    (
        rf"\b(?P<a>{NUMBER}) (?:adults?|grown ?ups?)(?: and| \+|,)? (?P<n>{NUMBER}) "
        r"(?:kids?|children|child|teens?|toddlers?)\b",
        0,
    ),  # "2 adults 3 kids": a + n
    (
        rf"(?P<n>{NUMBER})\s*(?:people|persons?|ppl|pax|guests?|adults?|tickets?|seats?|diners|"
        r"of us|heads|places|spots|covers|pers|ticks|tix)\b",
        None,
    ),
    (
        rf"\b(?:party|group|table|booking|reservation|seats?|tickets?) (?:of|for) (?P<n>{NUMBER})\b",
        None,
    ),
    (
        rf"\b(?:we are|were|we will be|well be|there are|there will be|therell be|theres|"
        rf"itll be|it will be|its|for|make it|change it to) (?:a group of |a party of |"
        rf"the )?(?P<n>{NUMBER})\b",
        None,
    ),
    (rf"\bme (?:and|plus|\+) (?:my )?(?P<n>{NUMBER}) ", 1),  # "me and 3 friends": 1 + n
    (
        rf"\b(?:book|reserve|get) (?:me |us )?(?P<n>{NUMBER})\b(?! ?(?:am|pm|oclock|o clock|:|\.\d))",
        None,
    ),
    (
        r"\b(?:just me|only me|just myself|by myself|on my own|solo|alone|"
        r"a single (?:ticket|seat|person)|one person|table for one|for one)\b",
        1,
    ),
    (
        rf"\b(?:me and (?:my |a )?(?:{COMPANIONS})|(?:my )?(?:{COMPANIONS}) and (?:i|me)|"
        r"a couple|the two of us|both of us|two of us|a pair|me \+ 1|me plus one)\b",
        2,
    ),
]
"""(pattern, count): how people say how many they are; ``None`` reads the ``n`` group,
an int is the count itself, or is added to the ``n`` (and ``a``) groups ("me and 3
friends", "2 adults 3 kids"). Sums come first, so their parts are not read alone."""

# ---------------------------------------------------------------------------- times
_AMPM = r"(?P<ap>a\.?m\.?|p\.?m\.?|a m|p m)"
_MINUTE_WORDS = {
    "oh five": 5, "ten": 10, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
    "forty five": 45, "fortyfive": 45, "forty-five": 45, "fifty": 50,
}  # fmt: skip
_OFFSETS = {"quarter": 15, "half": 30, "ten": 10, "five": 5, "twenty": 20, "twenty five": 25}
TIME_PATTERNS = [
    rf"\b(?P<h>\d{{1,2}})[:.h](?P<m>[0-5]\d)\s*{_AMPM}?(?!\w)",
    rf"\b(?P<h>\d{{1,2}})\s*{_AMPM}(?!\w)",
    rf"\b(?P<h>{NUMBER})\s*(?:oclock|o clock|o'clock)",
    rf"\b(?P<off>{'|'.join(_OFFSETS)}) (?P<dir>past|after|to|til|till|before) (?P<h>{NUMBER})\b",
    rf"\bhalf (?P<half>{NUMBER})\b",
    rf"\b(?P<h>{NUMBER}) (?P<mw>{'|'.join(sorted(_MINUTE_WORDS, key=len, reverse=True))})\b",
    r"\b(?P<noon>noon|midday|12 noon)\b",
    r"\b(?P<midnight>midnight)\b",
    r"\b(?:at|around|about|by|after|before|from|say|like|near|roughly|approx|approximately|"
    r"the) (?P<h>\d{1,2})(?:ish)?(?![\w-])(?! ?(?:people|persons?|ppl|pax|guests?|adults?|"
    r"tickets?|tix|seats?|of us|stars?|miles?|mins?|minutes|dollars|bucks|\$|%|\.\d|out of|/))",
    rf"\b(?P<h>{NUMBER}) (?=in the (?:morning|evening|afternoon|night)|at night|"
    rf"this (?:morning|evening|afternoon))",
    rf"\b(?P<h>{NUMBER})ish\b",
    rf"\b(?P<h>\d{{1,2}})(?P<m>[0-5]\d)\s*{_AMPM}(?!\w)",  # "730pm"
    r"\b(?:at|for|around|about|by) (?P<h>\d{1,2}) (?P<m>[0-5]\d)\b",  # "book it for 7 30"
]
"""Clock times as people write them; group names say how to read them (see clock_minutes)."""
EVENING = re.compile(r"\b(?:tonight|evening|night|pm|afternoon|dinner|supper|after work|late)\b")
MORNING = re.compile(r"\b(?:morning|am|breakfast|brunch|early)\b")
LUNCH = re.compile(r"\b(?:lunch|lunchtime|midday)\b")


def clock_minutes(m: re.Match, context: str) -> list[int]:
    """Minutes after midnight a time match may mean: one reading when am/pm, a 24-hour
    clock or the words around it ("tonight", "morning") decide, else both halves."""
    groups = {k: v for k, v in m.groupdict().items() if v is not None}
    if "noon" in groups:
        return [12 * 60]
    if "midnight" in groups:
        return [0]
    if "half" in groups:
        hour, minute = number(groups["half"]), 30
    else:
        hour, minute = number(groups["h"]), int(groups.get("m", 0))
    if "mw" in groups:
        minute = _MINUTE_WORDS[groups["mw"]]
    if "off" in groups:
        offset = _OFFSETS[groups["off"]]
        minute = offset if groups["dir"] in ("past", "after") else 60 - offset
        hour = hour if groups["dir"] in ("past", "after") else (hour - 1 or 12)
    if hour > 24 or minute > 59:
        return []
    if "ap" in groups:
        if not 1 <= hour <= 12:
            return []
        return [(hour % 12 + (12 if groups["ap"].startswith("p") else 0)) * 60 + minute]
    if hour >= 13 or hour == 0 or (m.group().startswith("0") and hour < 12):
        return [hour % 24 * 60 + minute]
    if LUNCH.search(context):  # 11:30 am .. 2:59 pm
        return [
            t for t in (hour % 12 * 60 + minute, (hour % 12 + 12) * 60 + minute) if 690 <= t < 900
        ] or [hour % 12 * 60 + minute]
    if EVENING.search(context):
        return [(hour % 12 + 12) * 60 + minute]
    if MORNING.search(context):
        return [hour % 12 * 60 + minute]
    return [hour % 12 * 60 + minute, (hour % 12 + 12) * 60 + minute]


def parse_clock(value: str) -> int | None:
    """Minutes after midnight of a vocabulary time ("7:30 pm", "19:30"); None if not one."""
    m = re.fullmatch(r"(\d{1,2}):(\d\d)\s*(am|pm)?", value.strip().lower())
    if not m:
        return None
    hour, minute = int(m.group(1)), int(m.group(2))
    if m.group(3):
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if m.group(3) == "pm" else 0)
    return hour * 60 + minute if hour < 24 and minute < 60 else None


def clock_text(minutes: int) -> str:
    """ "7:30 pm" for 1170."""
    hour, minute = divmod(minutes % (24 * 60), 60)
    return f"{(hour - 1) % 12 + 1}:{minute:02d} {'am' if hour < 12 else 'pm'}"


# ---------------------------------------------------------------------------- days
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_PHRASES = {
    "today": r"today|tonight|this evening|this afternoon|this morning|later today|"
    r"this eve|tdy",
    "tomorrow": r"tomorrow|tmrw|tmr|tmrrw|tomorow|tommorow|tommorrow|tomorro|2morrow|2moro|"
    r"tomoz|tomrw",
    "weekend": r"this weekend|the weekend|weekend|this wkend|wknd",
    **{
        day: rf"{day}s?|{day[:3]}|{day[:4]}|{day[:5]}" if day[3] in "sr" else rf"{day}s?|{day[:3]}"
        for day in WEEKDAYS
    },
}
"""Day words -> the regex of how they are written ("tmrw", "fri", "thurs")."""
DAY = re.compile(
    r"\b(?P<next>next |this |coming |this coming )?(?P<day>"
    + "|".join(f"(?P<{k}>{v})" for k, v in DAY_PHRASES.items())
    + r")\b"
)


def day_value(m: re.Match, values: tuple[str, ...]) -> str | None:
    """The vocabulary value a day match means: the day itself, or "next <day>" when only
    that exists; the weekend is its first day in the vocabulary."""
    word = next(k for k in DAY_PHRASES if m.group(k))
    days = ("saturday", "sunday") if word == "weekend" else (word,)
    for day in days:
        preferred = (f"next {day}", day) if (m.group("next") or "").strip() == "next" else ()
        for option in (*preferred, day, f"next {day}", f"this {day}", f"on {day}"):
            if option in values:
                return option
    return None


# ---------------------------------------------------------------------------- cues
QUESTION_START = re.compile(
    r"^(?:(?:so|and|but|ok|okay|also|oh|um|uh|hey|hi|please|then|sorry|great|cool|wait|hmm|"
    r"btw|and then|one more thing|quick question|oh and|by the way)\W+)*"
    r"(?:what|whats|which|when|whens|where|wheres|who|whos|whom|how|hows|is|isnt|are|arent|"
    r"was|does|doesnt|do|did|can|could|will|would|should|may|any idea|tell me|let me know|"
    r"id like to know|i would like to know|i wonder|wondering|do you know|need to know|"
    r"want to know|wanna know|give me|send me|show me|i need (?:the|their|its|to know)|"
    r"need (?:the|their)|whatre|whatll|(?:kindly |please )?(?:advise|check|find out|confirm)|"
    r"i was wondering|any chance)\b"
)
"""A clause that starts like a question or an ask for information."""
BOOKING = re.compile(
    r"\b(?:book|reserve|reserving|purchase|buy|grab|snag|secure)\b"
    r"|\b(?:get|make|need|place|request|do|have|hold)\b[^.?!,;]{0,20}?"
    r"\b(?:reservation|booking|tickets? for (?:me|us)|a table|the table|seats? for (?:me|us))\b"
    r"|\b(?:can|could|may) (?:i|we|you) (?:get|have) (?:me |us )?(?:\w+ )?(?:tickets?|tix|seats?|a table)\b"
    r"|\bget (?:me|us) (?:\w+ )?(?:tickets?|tix|seats?|a table|in)\b"
    r"|\b(?:go ahead|sign me up|lock it in|ill take (?:it|them|those|that one)|confirm the booking)\b"
)
"""Asking to be booked: requests the domain's ticket slot."""
INDIFFERENT = re.compile(
    r"\b(?:dont care|do not care|dont really care|couldnt care less|doesnt matter|"
    r"does not matter|dont mind|do not mind|no preference|no particular|not fussy|not picky|"
    r"not bothered|whatever|whichever|wherever|whenever|flexible|up to you|your choice|"
    r"you choose|you pick|you decide|no matter|open to anything|not important|irrelevant|"
    r"indifferent|surprise me|any works|either is fine|either way|anything (?:is|will|works)|"
    r"dont matter|do not matter|isnt a big deal|not a big deal|no big deal|isnt important|"
    r"not a concern|not an issue|no concern|doesnt bother me|isnt an issue|"
    r"isnt a problem|not a problem|anywhere|anytime|"
    r"all the same|no strong|not too fussed|not fussed|any (?:is|will do)|im easy|either)\b"
)
"""Indifference; "any <slot>" outside a question counts too (see the NLU)."""
ACT_CUES = {
    "greeting": r"\b(?:hi|hello|hey|hiya|howdy|yo|greetings|heya|hullo|good (?:morning|afternoon"
    r"|evening|day))\b",
    "thanks": r"\b(?:thanks|thank you|thank u|thankyou|thx|thnx|thanx|ty|tyvm|cheers|much "
    r"appreciated|appreciate it|thats all|that is all|thats everything|thats it|all set)\b",
    "closing": r"\b(?:bye|goodbye|good bye|byebye|see you|see ya|cya|forget it|never mind|"
    r"nevermind|nvm|cancel|quit|exit|im done|i give up|no thanks|no thank you|leave it|"
    r"not interested|forget about it|have a good (?:one|day|night))\b",
    "deny": r"\b(?:thats wrong|that is wrong|thats not|that is not|thats incorrect|not what i|"
    r"i said|i meant|i asked for|you got it wrong|not right|instead|actually|change (?:it|that)|"
    r"rather than|not \d|i didnt say|i did not say|correction|mistake|misheard|wrong)\b",
    "confirm_answer": r"(?:^|[.!?,;] ?)(?:yes|yeah|yep|yup|ya|yea|yess|correct|right|exactly|"
    r"sure|absolutely|affirmative|indeed|that works|sounds good|sounds great|ok|okay|alright|"
    r"fine|k|perfect|great|awesome|cool|excellent|lovely)\b|\b(?:thats right|that is right|thats correct|that is correct|you got it)\b",
    "not_sure": r"\b(?:not sure|unsure|dont know|do not know|no idea|maybe|perhaps|"
    r"hmm+|not certain|no clue|i guess|idk|not decided|havent decided|undecided|couldnt say|"
    r"cant say|hard to say|cannot say)\b",
}
"""The acts people express without a slot, by their cue words."""
BARE_NO = re.compile(
    r"(?:^|[.!?,;] ?)(?:no|nope|nah|negative)\b"
    r"(?=\s*(?:$|[,.!?;]|(?:that|thats|it|its|i|we|not|sorry|this|the|wrong|you|no)\b))"
)
"""A bare "no": a deny, unless the person is leaving ("nah, forget it, bye")."""
SELF_CORRECTION = re.compile(
    r"\b(?:no wait|wait no|wait|sorry i mean|i mean|or rather|make that|scratch that|actually|"
    r"lets say|make it|so|ok|okay|"
    r"instead|change (?:it|that) to|not \w+ but|i said|i meant|no,)\b"
)
"""After these, a slot's later value replaces its earlier one ("june okafor... no wait,
wes kimura")."""
LABEL_CUES = {
    "price": ("how much", "cost", "costs", "prices"),
    "cost": ("how much", "price"),
    "time": ("when", "what time", "time"),
    "date": ("what day", "which day", "day"),
    "day": ("what day", "which day", "when"),
    "address": ("where", "located", "location"),
    "location": ("where", "located"),
    "phone": ("call", "number", "phone"),
    "rating": ("rated", "reviews", "stars"),
    "name": ("called", "name"),
    "duration": ("how long",),
    "distance": ("how far",),
}
"""Words that name a slot in any domain, by a word of its label ("appointment time" is
asked with "when"); a schema's own ``aliases`` come first."""
CLAUSE_BREAK = re.compile(
    r"(?:[.!?;,:](?!\d))+|\s[-–—]+\s|\s(?:but|and|also|plus|though|although|then)\s"
)
"""Where one clause ends: punctuation or a conjunction."""
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "at",
        "on",
        "to",
        "for",
        "and",
        "or",
        "with",
        "by",
        "from",
        "is",
        "it",
        "its",
        "be",
        "my",
        "our",
        "your",
        "me",
        "we",
        "i",
        "you",
        "that",
        "this",
    ]
)
"""Words a value may drop or gain without changing which value it is."""

"""The fact check on human-written reports: small cases cut from the shared RNNLG tv and laptop sets (read from
`<repo>/../shared/datasets/`). The check is learned from each set's train split and tuned on its validation split, as a
user's run does; each case below is a test reference as the crowd wrote it, or that reference with one error put into
its *input*."""
from pathlib import Path

import pytest

from claim_t5.config import make_config
from claim_t5.data import load_claim_data, resolve_fields
from claim_t5.facts import learn_from_splits

SHARED = Path(__file__).resolve().parent.parent.parent/"shared"/"datasets"


def learned(name):
    d = SHARED/name
    if not (d/"clean_train.jsonl").exists(): pytest.skip(f"{d} not found: the shared human-written datasets sit beside the repo")
    cfg, evidence = resolve_fields(make_config(None, fields="auto"), d, progress=False)
    return learn_from_splits(load_claim_data(d, cfg=cfg, progress=False), cfg.fields), {r["name"]: r for r in evidence}


@pytest.fixture(scope="module")
def tv():
    return learned("rnnlg_tv")


@pytest.fixture(scope="module")
def laptop():
    return learned("rnnlg_laptop")


USB = ("act=inform; name=oceanus 39; type=television; accessories=remote control and european warranty; hasusbport=true; "
       "ecorating=a++")
USB_TEXT = ("the oceanus 39 television , with an a++ eco rating and usb ports , includes a remote control and european "
            "warranty .")


@pytest.mark.parametrize("inp,text", [
    (USB, USB_TEXT),  # "with an a++ eco rating": the old check wanted "and a large"
    ("act=inform; name=cerus 13; type=television; audio=nicam stereo; screensize=47 inch",
     "though the cerus 13 is a television with a nicam stereo , its screen is only 47 inches ."),  # 47 inches
    ("act=inform_only_match; name=heracles 45; type=television; hdmiport=2; hasusbport=true; pricerange=cheap",
     "there are no televisions besides the heracles 45 that are in the cheap price range , have 2 hdmi ports , and have usb ports ."),
    ("act=inform; name=oceanus 39; type=television; ecorating=a++; family=l1; hasusbport=false",
     "the oceanus 39 television does not have any usbports but it is in the l1 product family and has a a++ eco rating ."),
])
def test_correct_human_paraphrases_are_accepted(tv, inp, text):
    checker, _ = tv
    v = checker.check(inp, text)
    assert v["ok"], v["problems"]


def test_laptop_paraphrases_are_accepted(laptop):
    checker, _ = laptop
    v = checker.check("act=inform; name=satellite eurus 65; type=laptop; memory=4 gb; isforbusinesscomputing=false; driverange=medium",
                      "the satellite eurus 65 is a laptop designed for home use with 4 gb of memory and a medium sized hard drive")
    assert v["ok"], v["problems"]


def test_swapped_value_is_caught(tv):
    checker, _ = tv
    v = checker.check(USB.replace("ecorating=a++", "ecorating=a+"), USB_TEXT)  # the text says a++, the input now a+
    assert not v["ok"] and v["fields"]["ecorating"] == "wrong"
    assert "ecorating: the report says a++, the input a+" in v["problems"]
    v = checker.check(USB.replace("hasusbport=true", "hasusbport=false"), USB_TEXT)  # yes/no fields too
    assert not v["ok"] and v["fields"]["hasusbport"] in ("wrong", "missing")


def test_missing_fact_is_caught(tv):
    checker, _ = tv
    v = checker.check(USB + "; screensize=55 inch", USB_TEXT)  # the input has a screen size the report leaves out
    assert not v["ok"] and v["fields"]["screensize"] == "missing"
    v = checker.check(USB.replace("remote control and european warranty", "remote control"), USB_TEXT)  # a longer value holds it
    assert v["fields"]["accessories"] == "wrong" and any(s["field"] == "accessories" and s["status"] == "wrong" for s in v["spans"])


def test_invented_fact_is_caught(tv):
    checker, _ = tv
    v = checker.check(USB.replace("; ecorating=a++", ""), USB_TEXT)  # the report states an eco rating the input lacks
    assert not v["ok"] and any(x.startswith("ecorating=a++") for x in v["invented"])


def test_a_wrong_crowd_reference_is_caught(tv):
    "The check is strict, not blind: a reference that says 3 hdmi ports for hdmiport=2 fails."
    checker, _ = tv
    v = checker.check("act=inform; name=erebus 92; type=television; hdmiport=2; ecorating=a+; family=w2",
                      "you might like the erebus 92 television which has 3 hdmi ports , an a+ eco rating , and it is in the w2 family .")
    assert not v["ok"] and v["fields"]["hdmiport"] == "wrong"


def test_the_dialogue_act_is_context_not_a_fact(tv):
    checker, evidence = tv
    assert evidence["act"]["kind"] == "context" and "not a fact" in evidence["act"]["why"]
    assert evidence["hasusbport"]["kind"] == "category"  # reworded, but the reports tell it: a fact
    v = checker.check(USB.replace("act=inform", "act=recommend"), USB_TEXT)
    assert v["ok"] and "act" not in v["fields"]


def test_spans_mark_the_words_of_each_fact(tv):
    checker, _ = tv
    v = checker.check(USB, USB_TEXT)
    marked = {s["field"]: USB_TEXT[s["start"]:s["end"]] for s in v["spans"]}
    assert marked["name"] == "oceanus 39" and "a++" in marked["ecorating"] and "usb" in marked["hasusbport"]
    assert all(s["status"] == "ok" and s["value"] == USB_TEXT[s["start"]:s["end"]] for s in v["spans"])
    assert set(v["confidence"]) >= {"ecorating", "hasusbport", "accessories"}


def test_a_short_list_copy_field_is_read_in_other_words(tv):
    """screensize is copied by placeholder (verbatim in >= 90% of the reports) but its values are a short list seen in
    training: `47 inches` states `47 inch`, and a report that says another seen value is wrong, not merely missing."""
    checker, _ = tv
    assert {"screensize", "type", "hdmiport"} <= set(checker.short) and not {"name", "color"} & set(checker.short)  # 92 names, 22 colours: open sets
    inp = "act=inform; name=cerus 13; type=television; screensize=47 inch"
    text = "the cerus 13 is a television with a screen of 47 inches ."
    v = checker.check(inp, text)
    assert v["ok"] and v["fields"]["screensize"] == "ok", v["problems"]
    assert any(s["field"] == "screensize" and s["status"] == "ok" and "47" in s["value"] for s in v["spans"])
    v = checker.check(inp.replace("47 inch", "32 inch"), text)  # the input now says 32 inch; the text, in its own words, 47
    assert not v["ok"] and v["fields"]["screensize"] == "wrong", v["problems"]
    assert "screensize: the report says 47 inch, the input 32 inch" in v["problems"]
    v = checker.check(inp.replace("47 inch", "99 inch"), text.replace("47", "99"))  # never seen in training: verbatim only
    assert not v["ok"] and v["fields"]["screensize"] == "missing"
    v = checker.check(USB.replace("remote control and european warranty", "remote control"), USB_TEXT)  # a longer value holds it
    assert v["fields"]["accessories"] == "wrong" and any(s["field"] == "accessories" and s["status"] == "wrong" for s in v["spans"])


# ---------------------------------------------------------------- issue 27: viggo (paraphrased categories, yes/no, lists)
# Cases are validation references of ../shared/datasets/viggo (the check was designed on rnnlg_tv and viggo's train and
# validation splits; their test splits and rnnlg_laptop were not read while designing).

@pytest.fixture(scope="module")
def viggo():
    return learned("viggo")


BIOSHOCK = ("act=inform; name=BioShock; release_year=2007; rating=good; genres=action-adventure, role-playing, shooter; "
            "platforms=PlayStation, Xbox, PC; available_on_steam=yes; has_linux_release=no; has_mac_release=yes")
BIOSHOCK_TEXT = ("BioShock was good. It was released in 2007 on PlayStation, Xbox,PC, and Mac, but no Linux. It's an "
                 "action-adventure, role-playing and shooter game, and you can find it on Steam.")


def test_viggo_act_is_context_and_lists_are_read_item_by_item(viggo):
    checker, evidence = viggo
    assert evidence["act"]["kind"] == "context" and "dialogue act" in evidence["act"]["why"]  # it heads every input
    assert {"genres", "platforms", "player_perspective"} <= set(checker.lists)  # values with ", " are lists


def test_a_value_stated_in_plain_words_is_not_overruled(viggo):
    checker, _ = viggo
    v = checker.check(BIOSHOCK, BIOSHOCK_TEXT)  # "BioShock was good.": the old check said "rating: good is not stated"
    assert v["ok"], v["problems"]
    assert any(s["field"] == "rating" and s["status"] == "ok" and s["value"] == "good" for s in v["spans"])
    v = checker.check(BIOSHOCK.replace("rating=good", "rating=poor"), BIOSHOCK_TEXT)
    assert v["fields"]["rating"] == "wrong" and "rating: the report says good, the input poor" in v["problems"]


def test_a_list_is_a_set_of_items_and_a_dropped_item_is_named(viggo):
    checker, _ = viggo
    inp = "act=inform; name=Hitman 2; exp_release_date=November 13, 2018; genres=shooter, tactical"
    text = "Hitman 2 is a tactical shooter game, and it is expected out on November 13, 2018."
    v = checker.check(inp, text)  # any order: the old check said "genres: the report says shooter"
    assert v["ok"] and v["fields"]["genres"] == "ok", v["problems"]
    v = checker.check(inp, text.replace("tactical ", ""))  # an item dropped
    assert v["fields"]["genres"] == "missing" and "genres: tactical is not stated" in v["problems"], v["problems"]
    v = checker.check(inp.replace("shooter, tactical", "shooter"), text)  # an item the input's list lacks
    assert v["fields"]["genres"] == "wrong" and any(p.startswith("genres: the report says tactical") for p in v["problems"])


@pytest.mark.parametrize("inp,text,field", [
    ("act=inform; name=Hellblade: Senua's Sacrifice; release_year=2017; rating=excellent; genres=adventure, hack-and-slash, "
     "indie; platforms=PlayStation, Xbox, PC; available_on_steam=yes; has_linux_release=no; has_mac_release=no",
     "Hellblade: Senua's Sacrifice is an excellent indie hack-and-slash adventure game released in 2017 on the PlayStation, "
     "Xbox, and PC. It is available on Steam, but it does not have a release on Mac and Linux.", "has_mac_release"),
    ("act=give_opinion; name=Little Nightmares; rating=good; has_multiplayer=no; platforms=PlayStation",
     "I liked playing Little Nightmares on PlayStation. I usually enjoy games more on my own, so I didn't miss any "
     "multiplayer options.", "has_multiplayer"),
])
def test_a_negated_yes_no_fact_is_read_as_no(viggo, inp, text, field):
    checker, _ = viggo
    v = checker.check(inp, text)  # the old check: "the report says yes, the input no"
    assert v["ok"] and v["fields"][field] == "ok", v["problems"]
    v = checker.check(inp.replace(f"{field}=no", f"{field}=yes"), text)
    assert not v["ok"] and v["fields"][field] in ("wrong", "missing"), v["problems"]


def test_a_hint_is_not_an_invented_fact(viggo):
    checker, _ = viggo
    v = checker.check("act=request; player_perspective=first person; specifier=realistic",
                      "What's a first person game you think was realistic?")  # the old check: "invented: specifier=first"
    assert v["ok"] and not v["invented"], v["problems"]
    v = checker.check("act=request_explanation; rating=good; has_multiplayer=no",
                      "What is that you find fun about single-player games?")  # the old check: "invented: specifier=fun"
    assert v["ok"] and not v["invented"], v["problems"]


def test_a_name_in_another_case_or_spacing_is_the_inputs(viggo):
    checker, _ = viggo
    inp = ("act=inform; name=Metro 2033; release_year=2010; developer=4A Games; rating=good; genres=action, role-playing, "
           "shooter; player_perspective=first person")
    text = "In 2010, 4a Games came out with Metro 2033. It is a good first person action shooter. It also has elements of role-playing in it."
    v = checker.check(inp, text)  # before: "developer: '4A Games' is not in the report", "invented: id=4a"
    assert v["ok"] and v["fields"]["developer"] == "ok", v["problems"]
    v = checker.check(inp.replace("4A Games", "Valve Corporation"), text)
    assert v["fields"]["developer"] == "missing", v["problems"]


def test_a_list_item_named_under_a_negation_is_stated(viggo):
    checker, _ = viggo
    inp = "act=give_opinion; name=Metroid Prime Pinball; rating=average; has_multiplayer=yes; platforms=Nintendo"
    text = ("Metroid Prime Pinball is an okay game in my view, but nothing too special. I normally enjoy multiplayer games "
            "quite a bit, but I'm not really a fan of playing games on Nintendo.")
    assert "platforms" in checker.model["negated_lists"]  # learned: the crowd names platforms it dislikes
    v = checker.check(inp, text)  # before: "platforms: Nintendo is not stated"
    assert v["ok"] and v["fields"]["platforms"] == "ok", v["problems"]
    v = checker.check(inp.replace("platforms=Nintendo", "platforms=PC"), text)
    assert not v["ok"] and v["fields"]["platforms"] in ("wrong", "missing"), v["problems"]


def test_a_phrase_of_two_fields_states_both(viggo):
    checker, _ = viggo
    inp = ("act=inform; name=Crysis; release_year=2007; rating=good; genres=action-adventure, shooter; "
           "player_perspective=first person; has_multiplayer=yes")
    text = "2007's Crysis is an action-adventure FPS. It's a game with positive reviews, and it even has multiplayer."
    v = checker.check(inp, text)  # before: "player_perspective: first person is not stated" (fps was kept for shooter alone)
    assert v["ok"] and v["fields"]["player_perspective"] == "ok", v["problems"]
    v = checker.check(inp.replace("player_perspective=first person", "player_perspective=third person"), text)
    assert v["fields"]["player_perspective"] in ("wrong", "missing"), v["problems"]


STRONGHOLD = "act=give_opinion; name=Stronghold 2; release_year=2005; rating=average; available_on_steam=yes"


def test_a_frame_without_its_value_invents_no_copy_field(viggo):
    checker, _ = viggo
    text = ("Stronghold 2 is okay, but I have some issues with it. It came out in 2005 and I tend to enjoy games from that "
            "year, but the fact that it's on Steam annoys me.")  # a validation reference
    v = checker.check(STRONGHOLD, text)  # before: "invented: developer (not in the input)" from "games from"
    assert v["ok"] and not v["invented"], v["problems"]
    v = checker.check(STRONGHOLD, text.replace("I tend to enjoy games from that year", "was developed by Zorblax Interactive"))
    assert "developer (not in the input)" in v["invented"], v  # a frame with a name beside it: invented (a name never seen)


def test_a_negated_opinion_keeps_the_list_items_it_names(viggo):
    checker, _ = viggo
    inp = "act=give_opinion; name=Bus Driver; rating=poor; genres=driving/racing, indie, simulation; platforms=PC"
    text = "I didn't enjoy Bus Driver, but I usually don't like indie driving/racing simulation games for PC."  # a validation reference
    assert "genres" in checker.model["negated_lists"]  # learned: `not ... action` inside the input's action-adventure no longer counts against it
    v = checker.check(inp, text)  # before: "genres: indie is not stated", "genres: simulation is not stated"
    assert v["ok"] and v["fields"]["genres"] == "ok", v["problems"]
    v = checker.check(inp.replace("indie, simulation", "indie, shooter"), text)
    assert v["fields"]["genres"] in ("wrong", "missing"), v["problems"]

"""Editing kritarc text: one line changes, every other byte stays."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from mrflow_installer import kritarc


def test_adds_the_group_to_an_empty_or_missing_file() -> None:
    edit = kritarc.enable("", "mrflow_krita")
    assert edit.text == "[python]\nenable_mrflow_krita=true\n"
    assert edit.added_line and edit.added_group
    assert kritarc.remove(edit.text, "mrflow_krita", remove_empty_group=True) == ""


def test_adds_to_an_existing_group_and_keeps_everything_else() -> None:
    text = "[General]\nfoo=1\n\n[python]\nenable_other=true\n\n[Zed]\nbar=Ä\n"
    edit = kritarc.enable(text, "mrflow_krita")
    assert edit.text == (
        "[General]\nfoo=1\n\n[python]\nenable_other=true\nenable_mrflow_krita=true\n\n[Zed]\nbar=Ä\n"
    )
    assert edit.added_line and not edit.added_group
    assert kritarc.remove(edit.text, "mrflow_krita") == text


def test_appends_a_new_group_after_other_settings() -> None:
    text = "[General]\nfoo=1"  # no final newline
    edit = kritarc.enable(text, "mrflow_krita")
    assert edit.text == "[General]\nfoo=1\n\n[python]\nenable_mrflow_krita=true\n"
    assert (
        kritarc.remove(edit.text, "mrflow_krita", remove_empty_group=True) == "[General]\nfoo=1\n"
    )


def test_keeps_windows_line_endings() -> None:
    text = "[python]\r\nenable_other=true\r\n"
    edit = kritarc.enable(text, "mrflow_krita")
    assert edit.text == "[python]\r\nenable_other=true\r\nenable_mrflow_krita=true\r\n"


def test_turns_a_disabled_plugin_on_and_remembers_it_was_there() -> None:
    edit = kritarc.enable("[python]\nenable_mrflow_krita=false\n", "mrflow_krita")
    assert edit.text == "[python]\nenable_mrflow_krita=true\n"
    assert not edit.added_line and edit.previous_value == "false"


def test_already_enabled_is_left_alone() -> None:
    text = "[python]\nenable_mrflow_krita=true\n"
    edit = kritarc.enable(text, "mrflow_krita")
    assert edit.text == text and not edit.added_line


def test_a_nested_group_after_python_ends_it() -> None:
    text = "[python]\nenable_other=true\n[MainWindow][Toolbar mainToolBar]\nfoo=1\n"
    edit = kritarc.enable(text, "mrflow_krita")
    assert edit.text == (
        "[python]\nenable_other=true\nenable_mrflow_krita=true\n"
        "[MainWindow][Toolbar mainToolBar]\nfoo=1\n"
    )
    assert kritarc.remove(edit.text, "mrflow_krita") == text


def test_a_byte_order_mark_before_the_python_group_is_not_a_second_group() -> None:
    text = "\ufeff[python]\nenable_other=true\n"
    edit = kritarc.enable(text, "mrflow_krita")
    assert edit.text == "\ufeff[python]\nenable_other=true\nenable_mrflow_krita=true\n"


def test_only_the_python_group_is_touched() -> None:
    text = "[other]\nenable_mrflow_krita=true\n"
    edit = kritarc.enable(text, "mrflow_krita")
    assert edit.text.startswith(text) and edit.added_group
    assert kritarc.remove(edit.text, "mrflow_krita", remove_empty_group=True) == text


ini_line = st.one_of(
    st.from_regex(r"\[[A-Za-z ]{1,8}\]", fullmatch=True),
    st.from_regex(r"[a-z_]{1,10}=[a-z0-9 ]{0,8}", fullmatch=True),
    st.just(""),
    st.just("[python]"),
)


@given(st.lists(ini_line, max_size=12), st.sampled_from(["\n", "\r\n"]))
def test_enable_then_remove_gives_back_the_original(lines: list[str], newline: str) -> None:
    text = "".join(line + newline for line in lines)
    if "enable_mrflow_krita" in text:
        return
    edit = kritarc.enable(text, "mrflow_krita")
    assert "enable_mrflow_krita=true" in edit.text
    assert kritarc.remove(edit.text, "mrflow_krita", remove_empty_group=edit.added_group) == text

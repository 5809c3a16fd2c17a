"""parse_query / split_query / at_level: keywords checked against the DICOM dictionary (with close
matches), friendly dates as DICOM ranges, modality at the right attribute for each level."""

from __future__ import annotations

import pytest

from medsight.errors import InvalidConfig
from medsight.pacs.query import at_level, parse_date_range, parse_query, split_query


def test_the_issue_example():
    assert parse_query("Modality=CT&StudyDate=2020-2021") == {
        "Modality": "CT", "StudyDate": "20200101-20211231"}


@pytest.mark.parametrize(("text", "dicom"), [
    ("2020", "20200101-20201231"),
    ("202002", "20200201-20200229"),
    ("2021-02", "20210201-20210228"),
    ("20200315", "20200315"),
    ("2020-03-15", "20200315"),
    ("2020-", "20200101-"),
    ("-2021", "-20211231"),
    ("2020-03-01-2020-06-30", "20200301-20200630"),
    ("20200301-20200630", "20200301-20200630"),
    ("1999-2000-06", "19990101-20000630"),
])
def test_dates_and_ranges(text, dicom):
    assert parse_date_range(text) == dicom


@pytest.mark.parametrize("text", ["abc", "-", "2020-13", "20200230", "2021-2020"])
def test_bad_dates_say_what_is_accepted(text):
    with pytest.raises(InvalidConfig, match="StudyDate"):
        parse_date_range(text)


def test_unknown_keyword_suggests_close_matches():
    with pytest.raises(InvalidConfig, match="'Modalty' is not a DICOM keyword; did you mean Modality"):
        parse_query("Modalty=CT")
    with pytest.raises(InvalidConfig, match="not KEY=VALUE"):
        parse_query("CT")
    with pytest.raises(InvalidConfig, match="given twice"):
        parse_query("Modality=CT&Modality=MR")


def test_wildcards_and_other_date_attributes_pass():
    assert parse_query("PatientName=A*&SeriesDate=2019&BodyPartExamined=CHEST") == {
        "PatientName": "A*", "SeriesDate": "20190101-20191231", "BodyPartExamined": "CHEST"}
    assert parse_query("") == {} and parse_query(None) == {}


def test_modality_goes_to_the_attribute_of_each_level():
    query = parse_query("Modality=CT&StudyDate=2020&BodyPartExamined=CHEST&SOPClassUID=1.2.3")
    assert split_query(query) == {
        "study": {"StudyDate": "20200101-20201231", "ModalitiesInStudy": "CT"},
        "series": {"Modality": "CT", "BodyPartExamined": "CHEST"},
        "instance": {"SOPClassUID": "1.2.3"}}
    assert at_level({"Modality": "CT"}, "study") == {"ModalitiesInStudy": "CT"}
    assert at_level({"ModalitiesInStudy": "MR"}, "series") == {"Modality": "MR"}
    assert at_level({"Modality": "CT"}, "instance") == {"Modality": "CT"}

from datetime import date

import pytest

from casework.id_number import InvalidIdNumber, make_id_number, mask_id_number, parse_id_number

# The worked example printed in GB 11643-1999 itself.
STANDARD_EXAMPLE = "11010519491231002X"


def test_standard_example_decodes():
    resident = parse_id_number(STANDARD_EXAMPLE)
    assert resident.birth_date == date(1949, 12, 31)
    assert resident.sex == "F"  # sequence 002: even
    assert resident.area_code == "110105"


def test_male_from_odd_sequence():
    number = make_id_number("533124", date(1980, 2, 29), 131)
    resident = parse_id_number(number)
    assert resident.sex == "M" and resident.birth_date == date(1980, 2, 29)


def test_lowercase_x_is_accepted_and_stored_upper():
    assert parse_id_number(STANDARD_EXAMPLE.lower()).number == STANDARD_EXAMPLE


def test_wrong_check_character():
    with pytest.raises(InvalidIdNumber, match="check character"):
        parse_id_number(STANDARD_EXAMPLE[:-1] + "5")


@pytest.mark.parametrize("birth", ["19490230", "19491301", "18990101", "20991231"])
def test_impossible_birth_date(birth):
    first17 = "110105" + birth + "002"
    from casework.id_number import check_character

    with pytest.raises(InvalidIdNumber, match="birth date"):
        parse_id_number(first17 + check_character(first17))


@pytest.mark.parametrize("value", ["11010519491231002", "11010519491231002X1", "", "110105194912310"])
def test_wrong_length(value):
    with pytest.raises(InvalidIdNumber, match="18 characters"):
        parse_id_number(value)


def test_letters_inside_refused():
    with pytest.raises(InvalidIdNumber, match="17 digits"):
        parse_id_number("1101051949123100AX")


def test_unknown_province_refused():
    from casework.id_number import check_character

    first17 = "990105194912310021"[:17]
    with pytest.raises(InvalidIdNumber, match="province"):
        parse_id_number(first17 + check_character(first17))


def test_mask_shows_first_six_and_last_four():
    assert mask_id_number(STANDARD_EXAMPLE) == "110105********002X"

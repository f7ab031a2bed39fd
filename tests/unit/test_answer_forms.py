"""Answer forms the checker must read, with positives and negatives in each category.

Each case goes through :func:`check_answer` under the evaluation policy (a model's response
against a dataset's gold), so extraction, normalisation and the OR with math-verify are all
exercised the way the pipeline uses them.
"""

from __future__ import annotations

import pytest

from deepmath.answers import (
    EVAL,
    REWARD,
    VERIFY,
    check_answer,
    compare,
    extract_answer,
    extract_final_boxes,
    extract_stated,
)


def ok(response: str, gold: str, policy=EVAL) -> bool:
    return check_answer(response, gold, timeout_s=None, **policy.options()).equivalent


# A label on one side names the value the other side gives bare: the label is dropped, and
# several labelled values are compared in order (against a bare list) or label by label.
LABELS_EQUAL = [
    ("\\boxed{y = 2, x = 1}", "(1, 2)"),
    ("\\boxed{x = -5,\\ p = \\frac{14}{3}}", "-5, \\frac{14}{3}"),  # not consecutive: as written
    ("\\boxed{(3,2)}", "(p,q)=(3,2)"),
    ("\\boxed{1}", "|AB|=1"),
    ("\\boxed{11:21}", "V_1:V_2=11:21"),
    ("\\boxed{4, 5}", "AB=4, CD=5"),
    ("\\boxed{7:32}", "S_{MBCN}:S=7:32"),
    ("\\boxed{V_1:V_2=11:21}", "11:21"),
    ("\\boxed{AB=4, CD=5}", "4, 5"),
    ("\\boxed{a_{37} = 19, a_3 = 2}", "a_3 = 2, a_{37} = 19"),
    ("\\boxed{p=3, q=2}", "(p,q)=(3,2)"),
    ("\\boxed{x = 1, x = 2}", "2, 1"),
    ("\\boxed{\\frac{3}{4}}", "\\frac{a}{b} = \\frac{3}{4}"),
    ("\\boxed{CD = 5, AB = 4}", "AB = 4, CD = 5"),
    ("\\boxed{2:3}", "AB : BC = 2 : 3"),
    ("\\boxed{45}", "m\\angle ABC = 45^\\circ"),
    ("\\boxed{a=1,\\ b=-2,\\ c=3}", "(1,-2,3)"),
    ("\\boxed{12}", "S_{\\triangle ABC} = 12"),
    ("\\boxed{12}", "[ABC] = 12"),
    ("\\boxed{a:b:c = 1:2:3}", "1:2:3"),
    ("The roots are\n$$x_1 = 2,\\quad x_2 = -3$$", "-3, 2"),
]
LABELS_UNEQUAL = [
    ("\\boxed{b = -2, a = 1}", "(-2, 1)"),  # consecutive letters name (a, b) in their order
    ("\\boxed{(2,3)}", "(p,q)=(3,2)"),
    ("\\boxed{(3,3)}", "(p,q)=(3,2)"),
    ("\\boxed{2}", "|AB|=1"),
    ("\\boxed{21:11}", "V_1:V_2=11:21"),
    ("\\boxed{5, 4}", "AB=4, CD=5"),
    ("\\boxed{4, 6}", "AB=4, CD=5"),
    ("\\boxed{4, 5, 6}", "AB=4, CD=5"),
    ("\\boxed{y=3}", "x=3"),
    ("\\boxed{CD=4, AB=5}", "AB=4, CD=5"),
    ("\\boxed{(q,p)=(3,2)}", "(p,q)=(3,2)"),
    ("\\boxed{AB=4, EF=5}", "AB=4, CD=5"),
    ("\\boxed{x = 3}", "(x, y) = (3, 4)"),
    ("\\boxed{k = 2, m = 3}", "k = 2"),
    ("\\boxed{a=1, b=2}", "b=1, a=2"),
    ("\\boxed{3:2}", "AB : BC = 2 : 3"),
    ("\\boxed{a:b:c = 1:3:2}", "1:2:3"),
    ("\\boxed{12:00}", "1:00"),
    ("\\boxed{x_1 = 2, x_2 = -3}", "(-3, 2)"),
    ("The roots are\n$$x_1 = 2,\\quad x_2 = 3$$", "-3, 2"),
]
# "Final Answer:" followed by a sentence that names the variable before its value.
PROSE_EQUAL = [
    ("Final Answer: The largest $n$ is 34.", "34"),
    ("Final Answer: The value of $k$ is $\\frac{1}{2}$.", "\\frac12"),
    ("Final Answer: The volume of $ABCDEFGH$ is 120. I hope it is correct.", "120"),
    ("Final Answer: The maximum number of points in the domain of $f(x)$ is 19.", "19"),
    ("Final Answer: There are 5 ways.", "5"),
    ("Final Answer: Jane started growing Sphere 3 hours ago. I hope it is correct.", "3"),
    ("Final Answer: $k$ is $\\frac12$.", "\\frac12"),
    ("Final Answer: There are 5 ways, since 5 is prime.", "5"),
    ("Final Answer: The sum of the first $10$ terms is 55.", "55"),
    ("**Final Answer:** The minimum value of $f$ is $-3$.", "-3"),
    ("**Final Answer**\nThe largest $n$ is 34.", "34"),
    ("Final answer: The number of ways is **12**.", "12"),
    ("Final Answer: 34 is the largest such $n$.", "34"),
    ("Final Answer: $34$ is the largest such $n$.", "34"),
    ("Final Answer: I get that the largest $n$ is 34.", "34"),
]
PROSE_UNEQUAL = [
    ("Final Answer: The largest $n$ is 34.", "35"),
    ("Final Answer: The value of $k$ is $\\frac{1}{2}$.", "\\frac13"),
    ("Final Answer: The volume of $ABCDEFGH$ is 120. I hope it is correct.", "12"),
    ("Final Answer: The number of solutions is not 3.", "3"),
    ("Final Answer: Between 3 and 5 hours ago.", "3"),
    ("Final Answer: $5$ and the remainder is $2$.", "2"),
    ("Final Answer: The sum of the first $10$ terms is 55.", "10"),
    ("Final Answer: The probability is $\\frac{1}{6}$, which is about 0.167.", "0.167"),
    ("**Final Answer**\nThe largest $n$ is 34.", "35"),
    ("Final Answer: 34 is the largest such $n$.", "35"),
    ("Final Answer: I get that the largest $n$ is 34.", "43"),
]
# "Final Answer:" followed by a sentence that opens with its value: the value counts only when
# the sentence states it as the answer; one it judges or negates ("is wrong", "cannot be") states
# nothing, and the value the same text gives after it ("...; we get 5") is the answer.
VALUE_FIRST_EQUAL = [
    ("Final Answer: 3 is wrong; we get 5.", "5"),
    ("Final Answer: 12 is the answer.", "12"),
    ("Final Answer: 12 is the minimum.", "12"),
    ("Final Answer: 34 is the largest possible value of $n$.", "34"),
    ("Final Answer: 7 is our final answer.", "7"),
    ("Final Answer: 5 is correct.", "5"),
    ("Final Answer: $\\frac{1}{2}$ is the probability.", "\\frac12"),
    ("Final Answer: $x = 5$ is the only solution.", "x = 5"),
    ("Final Answer: 3 is incorrect; the correct value is 5.", "5"),
    ("Final Answer: 3 cannot be the answer, so it is 5.", "5"),
    ("Final Answer: 3 isn't possible, so 5.", "5"),
    ("Final Answer: $3$ is false; the value is $5$.", "5"),
    ("Final Answer: $x = 1$ is extraneous, so $x = 5$.", "x = 5"),
    ("Final Answer: 3 is not the answer but 5 is.", "5"),
    ("Final Answer: 3 is too small. We get 5.", "5"),
    ("Final Answer: 3 was ruled out, leaving 5.", "5"),
]
VALUE_FIRST_UNEQUAL = [
    ("Final Answer: 3 is wrong; we get 5.", "3"),
    ("Final Answer: 3 is incorrect. We get 5.", "3"),
    ("Final Answer: 3 is not the answer; it is 5.", "3"),
    ("Final Answer: 3 is false; the value is 5.", "3"),
    ("Final Answer: 3 is impossible, so we take 5.", "3"),
    ("Final Answer: 3 cannot be the answer, so it is 5.", "3"),
    ("Final Answer: 3 isn't the largest; 5 is.", "3"),
    ("Final Answer: 3 is the wrong answer; it is 5.", "3"),
    ("Final Answer: $x = 1$ is extraneous, so $x = 5$.", "x = 1"),
    ("Final Answer: $3$ is invalid; $5$ is.", "3"),
    ("Final Answer: 3 was ruled out, leaving 5.", "3"),
    ("Final Answer: 3 is prime, so we get 5.", "3"),
    ("Final Answer: 12 is the answer.", "13"),
    ("Final Answer: 3 is wrong; we get 5.", "35"),
]
# Interval membership against an inequality chain, both ways round.
INTERVALS_EQUAL = [
    ("\\boxed{x \\in [-2,7]}", "-2 \\le x \\le 7"),
    ("\\boxed{-2 \\le x \\le 7}", "x \\in [-2,7]"),
    ("\\boxed{x \\in (-2,7]}", "-2 < x \\le 7"),
    ("\\boxed{x \\in [3, \\infty)}", "x \\ge 3"),
    ("\\boxed{x \\geq 3}", "x \\in [3, +\\infty)"),
    ("\\boxed{x \\in (-\\infty, 2) \\cup (3, \\infty)}", "x < 2 \\text{ or } x > 3"),
    ("\\boxed{7 \\ge x \\ge -2}", "x \\in [-2,7]"),
    ("\\boxed{x \\in [-2,7]}", "7 \\geq x \\geq -2"),
    ("\\boxed{7 > x \\geq -2}", "[-2, 7)"),
    ("\\boxed{-2 \\leqslant x \\leqslant 7}", "[-2,7]"),
    ("Therefore $x \\gt 5$ is the solution.", "x > 5"),
    ("\\boxed{x \\lt 5}", "(-\\infty, 5)"),
    ("\\boxed{x \\le -1 \\lor x \\ge 3}", "(-\\infty,-1]\\cup[3,\\infty)"),
    ("\\boxed{\\{x \\mid -2 \\le x \\le 7\\}}", "[-2, 7]"),
    ("\\boxed{t \\in [0, 5]}", "0 \\le t \\le 5"),
    ("\\boxed{x \\in \\mathbb{R}}", "(-\\infty,\\infty)"),
    ("\\boxed{x \\geq -2 \\text{ and } x \\leq 7}", "[-2, 7]"),
    ("\\boxed{x > 1 \\text{ and } x < 4}", "x \\in (1, 4)"),
    ("\\boxed{(-\\infty, -3) \\cup (3, \\infty)}", "|x| > 3"),
    ("\\boxed{[-3, 3]}", "|x| \\le 3"),
]
INTERVALS_UNEQUAL = [
    ("\\boxed{x \\in [-2,7)}", "-2 \\le x \\le 7"),
    ("\\boxed{-2 < x \\le 7}", "x \\in [-2,7]"),
    ("\\boxed{x \\in (3, \\infty)}", "x \\ge 3"),
    ("\\boxed{x \\in (-\\infty, 2] \\cup (3, \\infty)}", "x < 2 \\text{ or } x > 3"),
    ("\\boxed{x \\in [-2,8]}", "-2 \\le x \\le 7"),
    ("\\boxed{x \\le 3}", "x \\in [3, \\infty)"),
    ("\\boxed{7 \\ge x > -2}", "x \\in [-2,7]"),
    ("\\boxed{x \\gt 5}", "x \\geq 5"),
    ("\\boxed{\\{x \\mid -2 < x \\le 7\\}}", "[-2, 7]"),
    ("\\boxed{x \\le -1 \\vee x > 3}", "(-\\infty,-1]\\cup[3,\\infty)"),
    ("\\boxed{x \\geq -2 \\text{ and } x \\leq 7}", "(-2, 7]"),
    ("\\boxed{x \\le -2 \\text{ or } x \\ge 7}", "[-2, 7]"),
    ("\\boxed{x \\in \\mathbb{R}}", "(0, \\infty)"),
    ("\\boxed{(-3, 3)}", "|x| \\le 3"),
    ("\\boxed{(-\\infty, -3] \\cup [3, \\infty)}", "|x| > 3"),
]
# Percent as a word or abbreviation: the same as "%" (the value, or a hundredth of it).
PERCENT_EQUAL = [
    ("\\boxed{25 \\text{ percent}}", "25\\%"),
    ("\\boxed{25 percent}", "0.25"),
    ("\\boxed{25 pct}", "25"),
    ("\\boxed{25 per cent}", "25\\%"),
    ("The answer is 25 percent.", "25"),
    ("\\boxed{12.5 percent}", "12.5\\%"),
    ("\\boxed{25\\%}", "25 \\text{ percent}"),
]
PERCENT_UNEQUAL = [
    ("\\boxed{25 percent}", "2.5"),
    ("\\boxed{25 pct}", "26\\%"),
    ("\\boxed{2.5 per cent}", "25"),
    ("\\boxed{25 percent}", "0.025"),
]
# Choice letters A-E are one answer in either case; other lone letters are case-sensitive.
LETTERS_EQUAL = [
    ("\\boxed{e}", "\\text{E}"),
    ("\\boxed{(c)}", "C"),
    ("\\boxed{\\text{(b)}}", "B"),
    ("\\boxed{B}", "b"),
    ("\\boxed{\\textbf{D}}", "d"),
    ("\\boxed{\\mathrm{a}}", "(A)"),
    ("\\boxed{C)}", "c"),
    ("The answer is (d).", "D"),
    ("The correct option is c.", "C"),
    ("**(C)**", "c"),
    ("\\boxed{(c) 12}", "C"),
    ("The answer is (c) $12$.", "\\text{(C)}"),
    ("The answer is (c) $12$.", "12"),
    ("\\boxed{(B) 17}", "17"),
    ("\\boxed{B. y = 17}", "17"),
]
LETTERS_UNEQUAL = [
    ("\\boxed{b}", "\\text{C}"),
    ("\\boxed{x}", "X"),
    ("\\boxed{2e}", "2E"),
    ("\\boxed{(c)}", "D"),
    ("\\boxed{e}", "2.718"),
    ("\\boxed{n}", "N"),
    ("\\boxed{(c)}", "(d)"),
    ("\\boxed{C)}", "d"),
    ("The correct option is c.", "D"),
    ("**(C)**", "d"),
    ("\\boxed{(c) 12}", "D"),
    ("The answer is (c) $12$.", "13"),
    ("\\boxed{(B) 17}", "18"),
]
# An unbraced \sqrt takes a whole digit run (what the writer means), or one letter.
RADICALS_EQUAL = [
    ("\\boxed{\\sqrt12}", "\\sqrt{12}"),
    ("\\boxed{2\\sqrt 3}", "2\\sqrt{3}"),
    ("\\boxed{\\sqrt[3]8}", "2"),
    ("\\boxed{\\sqrt12}", "2\\sqrt3"),
    ("\\boxed{3\\sqrt 27}", "9\\sqrt{3}"),
    ("\\boxed{\\frac{\\sqrt 15}{3}}", "\\frac{\\sqrt{15}}{3}"),
    ("\\boxed{\\sqrt[3] 16}", "2\\sqrt[3]{2}"),
]
RADICALS_UNEQUAL = [
    ("\\boxed{\\sqrt 13}", "\\sqrt{12}"),
    ("\\boxed{\\sqrt[3]8}", "\\sqrt{8}"),
    ("\\boxed{2\\sqrt 3}", "3\\sqrt 2"),
    ("\\boxed{\\sqrt12}", "2"),
    ("\\boxed{\\sqrt12}", "\\sqrt{1}2"),
]
# The whole answer in display math, with no box, as the last thing in the response.
DISPLAY_EQUAL = [
    ("So we get\n$$x = 5$$", "5"),
    ("Solving, the value is\n\\[ 5 \\]", "5"),
    ("Hence\n\\[ \\frac{3}{4} \\]\n", "0.75"),
    ("Putting it together:\n$$(1, 2)$$.", "(1,2)"),
    ("Collecting terms we find\n$$y = 3+4 = 7$$", "7"),
    ("The solution set is\n\\[ x \\in [-2, 7] \\]", "-2 \\le x \\le 7"),
    ("The side lengths are\n$$AB = 4, CD = 5$$", "4, 5"),
    ("The total is\n$$12{,}345 \\text{ dollars}$$", "12345"),
    ("Adding up:\n$$\\begin{aligned} x &= 2+3 \\\\ &= 5 \\end{aligned}$$", "5"),
]
DISPLAY_UNEQUAL = [
    ("So we get\n$$x = 5$$", "6"),
    ("So we get\n\\[ x^2 = 25 \\]", "5"),
    ("We first find\n\\[ 5 \\]\nbut that is not all, the result is 7", "5"),
    ("Collecting terms we find\n$$y = 3+4 = 7$$", "3"),
    ("The side lengths are\n$$AB = 4, CD = 5$$", "5, 4"),
    ("Adding up:\n$$\\begin{aligned} x &= 2+3 \\\\ &= 5 \\end{aligned}$$", "6"),
]

EQUAL = {
    "multi_box": [
        ("so $x = \\boxed{3}$, \\boxed{5}", "{3, 5}"),
        ("\\boxed{3}, \\boxed{5}", "3, 5"),
        ("$\\boxed{(1,4)}$ \\text{ and } $\\boxed{(7,3)}$", "(1,4),(7,3)"),
        ("We get $x = \\boxed{70}$ or $x = \\boxed{110}$.", "70,110"),
        (
            "so $\\theta = \\boxed{4^\\circ}$ or $\\theta = \\boxed{20^\\circ}$",
            "4^\\circ, 20^\\circ",
        ),
        ("The roots are \\boxed{-2} and \\boxed{1}.", "1, -2"),
        ("\\boxed{2}", "\\boxed{2}"),
        ("so $2$ and $3$: \\boxed{2, 3}", "\\boxed{2} and \\boxed{3}"),
        ("$\\boxed{15\\frac{39}{40}}$, or $\\boxed{\\frac{639}{40}}$", "\\frac{639}{40}"),
    ],
    "unboxed": [
        ("Answer: $12$", "12"),
        ("Adding up, the final answer is $20{,}310$.", "20310"),
        ("Hence $y \\leq 2$ is the solution.", "y \\le 2"),
        ("**Final Answer:** 7", "7"),
        ("Thus $x = 5$ and $y = 3$.", "(5, 3)"),
        ("Carrying out the division, the quotient is $x^2 + 1$.", "x^2+1"),
        ("#### 1,200", "1200"),
    ],
    "decimal_comma": [
        ("\\boxed{2,75}", "2.75"),
        ("\\boxed{3,000}", "3000"),
        ("\\boxed{12,\\!345,\\!678}", "12345678"),
        ("\\boxed{12\\,345}", "12345"),
        ("\\boxed{1{,}000{,}000}", "1000000"),
        ("\\boxed{0,5}", "0.5"),
    ],
    "mixed_number": [
        ("\\boxed{5 2/3}", "\\frac{17}{3}"),
        ("\\boxed{1207 1/4}", "1207.25"),
        ("\\boxed{2\\frac{1}{4}}", "\\frac94"),
        ("\\boxed{12 1/2\\%}", "12.5\\%"),
        ("\\boxed{-3 1/2}", "-3.5"),
    ],
    "chains_and_labels": [
        ("\\boxed{y = 3+4+2 = 9}", "9"),
        ("$\\boxed{y \\approx 9}$", "9"),
        ("\\boxed{x = \\frac{6}{2} = 3}", "3"),
        ("\\boxed{|CD| = 4}", "4"),
        ("\\boxed{a=3, b=7}", "(3,7)"),
        ("\\boxed{m\\angle A = 30^\\circ}", "30"),
        ("\\boxed{(p,q,r) = (6,31,-1)}", "(6,31,-1)"),
        ("\\boxed{f(2) = 5}", "5"),
    ],
    "equation_form": [
        ("\\boxed{3x-6y+2=0}", "y=\\frac12 x+\\frac13"),
        ("\\boxed{y = 2x + 3}", "2x - y + 3 = 0"),
        ("\\boxed{4y + 1 = 0}", "y = -\\frac{1}{4}"),
        ("\\boxed{x^2 + y^2 = 4}", "y^2 = 4 - x^2"),
    ],
    "punctuation_and_letters": [
        ("\\boxed{12.}", "12"),
        ("\\boxed{\\mathcal{C}}", "C"),
        ("\\boxed{B. y = 17}", "B"),
        ("\\boxed{(B)}", "B"),
        ("\\boxed{240\\\\}", "240"),
        ("\\boxed{\\text{(C)}}", "C"),
        ("\\boxed{F^{\\prime}}", "F'"),
    ],
    "tuples_and_sets": [
        ("\\boxed{(1,2),(1,2),(3,4)}", "(1,2),(3,4)"),
        ("\\boxed{(3,4),(1,2)}", "(1,2),(3,4)"),
        ("\\boxed{\\{-2, 1+\\sqrt{5}, 1-\\sqrt{5}\\}}", "\\{1\\pm\\sqrt{5},-2\\}"),
        ("\\boxed{x \\le 3}", "(-\\infty, 3]"),
        ("\\boxed{-\\sqrt{3} < x < \\sqrt{3}}", "(-\\sqrt{3}, \\sqrt{3})"),
        ("\\boxed{x < 2 \\text{ or } x > 3}", "(-\\infty, 2) \\cup (3, \\infty)"),
        ("\\boxed{[-2,7]}", "x \\in [-2,7]"),
        ("\\boxed{(-2,-14,-7)}", "\\begin{pmatrix} -2 \\\\ -14 \\\\ -7 \\end{pmatrix}"),
    ],
}

UNEQUAL = {
    "lists": [
        ("\\boxed{14, 30, \\text{ and } 77}", "12, 30, \\text{ and } 77"),
        ("\\boxed{12, 30, and 77}", "14, 30, and 77"),
        ("\\boxed{2, 4, 6, \\ldots}", "2, 4, 6"),
        ("\\boxed{2, 4, 6}", "2, 4, 6, \\ldots"),
        ("\\boxed{3}, \\boxed{5}", "5"),
        ("\\boxed{5}", "3, 5"),
        ("\\boxed{(1,2),(3,5)}", "(1,2),(3,4)"),
        ("\\boxed{[2,5]}", "[2,5)"),
        ("\\boxed{(-2,-14,7)}", "\\begin{pmatrix} -2 \\\\ -14 \\\\ -7 \\end{pmatrix}"),
    ],
    "primes": [
        ("\\boxed{F'}", "F"),
        ("\\boxed{F}", "F'"),
        ("\\boxed{f'(x)}", "f(x)"),
        ("\\boxed{B''}", "B'"),
    ],
    "degenerate": [
        ("\\boxed{7 3/0}", "7"),
        ("\\boxed{\\frac{1}{0}}", "\\infty"),
        ("\\boxed{}", "0"),
        ("I could not solve it.", "3"),
    ],
    "multiline": [
        ("We get $x = 5$\n$x = -5$", "-5"),
        ("We get $x = 5$ or $x = -5$", "-5"),
    ],
    "values": [
        ("\\boxed{2,75}", "275"),
        ("\\boxed{5 2/3}", "\\frac{10}{3}"),
        ("\\boxed{2\\frac{1}{4}}", "2.5"),
        ("\\boxed{y = 3+4+2 = 10}", "9"),
        ("\\boxed{x^2 + y^2 = 4}", "4"),
        ("\\boxed{x = -\\frac{1}{4}}", "y = -\\frac{1}{4}"),
        ("\\boxed{5x - 7y + 11z - 4 = 0}", "5x - 7y + 11z + 4 = 0"),
        ("\\boxed{A. y = 17}", "B"),
        ("\\boxed{\\mathcal{D}}", "C"),
        ("\\boxed{12 \\text{ feet}}", "12 \\text{ inches}"),
        ("\\boxed{\\$5.40}", "5.4 \\text{ cents}"),
        ("\\boxed{288}", "288\\pi"),
        ("Answer: $13$", "12"),
    ],
}


EQUAL |= {
    "labels": LABELS_EQUAL,
    "prose_statement": PROSE_EQUAL,
    "value_first_statement": VALUE_FIRST_EQUAL,
    "interval_membership": INTERVALS_EQUAL,
    "percent_words": PERCENT_EQUAL,
    "choice_letter_case": LETTERS_EQUAL,
    "unbraced_radicals": RADICALS_EQUAL,
    "display_math_answer": DISPLAY_EQUAL,
}
UNEQUAL |= {
    "labels": LABELS_UNEQUAL,
    "prose_statement": PROSE_UNEQUAL,
    "value_first_statement": VALUE_FIRST_UNEQUAL,
    "interval_membership": INTERVALS_UNEQUAL,
    "percent_words": PERCENT_UNEQUAL,
    "choice_letter_case": LETTERS_UNEQUAL,
    "unbraced_radicals": RADICALS_UNEQUAL,
    "display_math_answer": DISPLAY_UNEQUAL,
}


@pytest.mark.parametrize(
    "response,gold", [c for cases in EQUAL.values() for c in cases], ids=lambda x: x[:40]
)
def test_equal_forms(response: str, gold: str) -> None:
    assert ok(response, gold)


@pytest.mark.parametrize(
    "response,gold", [c for cases in UNEQUAL.values() for c in cases], ids=lambda x: x[:40]
)
def test_unequal_forms(response: str, gold: str) -> None:
    assert not ok(response, gold)


def test_boxes_listed_together_are_one_answer_but_an_earlier_result_is_not() -> None:
    assert extract_final_boxes("\\boxed{3}, \\boxed{5}") == "3, 5"
    assert extract_final_boxes("so \\boxed{4} cm. Then \\boxed{8}") == "8"
    assert extract_final_boxes("\\boxed{\\boxed{3}}") == "\\boxed{3}"
    parts = "\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 1)}"
    assert extract_final_boxes(parts) == "(3, 3), (1, 1)"
    assert extract_final_boxes("\\boxed{4} \\text{ for part (a); so } \\boxed{8}") == "8"
    assert extract_final_boxes("\\boxed{3") is None  # the final box was cut off
    assert extract_answer("\\boxed{2} then \\boxed{3") is None


def test_stated_answers_are_a_last_resort_the_verify_policy_does_not_use() -> None:
    text = "Adding the parts, Answer: $12$"
    assert extract_stated(text) == "12"
    assert REWARD.but(think="whole").answer(text) == "12" and EVAL.answer(text) == "12"
    assert VERIFY.answer(text) is None  # the dataset takes only committed (boxed) answers
    assert VERIFY.answer("\\boxed{4}. Answer: 5") == "4"  # a box wins over a statement
    assert extract_stated("She makes $18 every day.") is None  # a dollar sign is not math


def test_scored_part_per_policy() -> None:
    thinking = "<think>maybe \\boxed{16}</think> so \\boxed{18}"
    assert VERIFY.answer(thinking) == "18" and EVAL.answer(thinking) == "18"
    unfinished = "<think>it is \\boxed{16}"
    assert EVAL.answer(unfinished) == "16"  # the authors' eval: the whole response
    assert REWARD.answer(unfinished) is None  # the DeepMath reward needs </think>
    assert VERIFY.answer(unfinished) == "16"  # after </think> if any, else everything


def test_math_verify_on_the_text_is_ored_in() -> None:
    # nothing this checker extracts, but math-verify reads the sentence
    response = "Multiplying, we get $\\frac{1}{2}$ of the total"
    res = check_answer(response, "0.5", **EVAL.options())
    assert res.equivalent and res.method == "math_verify_full_text"
    assert not check_answer(response, "0.5", **VERIFY.options()).equivalent


def test_math_verify_reading_part_of_a_list_is_refused() -> None:
    # math-verify alone reads both lists as their last item, 77
    from math_verify import parse, verify

    assert verify(parse("12, 30, and 77"), parse("14, 30, and 77"))
    assert not ok("14, 30, and 77", "12, 30, and 77")
    assert not ok("The numbers are 14, 30, and 77.", "12, 30, and 77")


def test_a_wrong_last_box_is_rescued_by_the_answer_is_sentence_only_in_eval() -> None:
    response = "\\boxed{5}\nThe answer is: 7"
    assert ok(response, "7") and not ok(response, "7", REWARD.but(think="whole"))


def test_equivalence_direction_does_not_matter_for_symmetric_forms() -> None:
    for a, b in [("\\{3, 5\\}", "5, 3"), ("y = 2x+3", "2x - y + 3 = 0"), ("5 2/3", "17/3")]:
        assert compare(a, b)[0] and compare(b, a)[0], (a, b)


def test_a_decimal_comma_is_read_in_predictions_only() -> None:
    """MATH golds write lists tightly ("1,3" are two roots): a gold is never a decimal comma."""
    assert compare("1,3", "1.3")[0]  # a model writing 1.3 the European way
    assert not compare("1.3", "1,3")[0]  # the gold's two roots are not 1.3
    assert compare("1, 3", "1,3")[0]


def test_pathological_text_is_answered_not_timed_out() -> None:
    """Long runs of spaces, letters, commas or backslashes must not make a regex backtrack for
    ever: each pair is answered inside a 3 s budget, not reported as a timeout."""
    from deepmath.answers import check_pairs

    bad = [
        "1 " + "a" * 60 + "!",
        "1" + " " * 50_000 + "x",
        "2, " * 20_000,
        "x" + " and " * 10_000 + "y",
        "3" + " " * 20_000 + "\\\\",
        "\\" * 30_000,
        "Therefore " + "$x " * 20_000,
        "1" + "\n" * 50_000 + "x",
        "1" + " \n" * 20_000 + "x",
        "(c) " * 20_000,
        "Final Answer: The " + "$a" * 30_000,
        "x = 1, " * 10_000 + "y = 2",
    ]
    pairs = [(f"\\boxed{{{s}}}", "5") for s in bad] + [(s, "5") for s in bad]
    results = check_pairs(pairs, timeout_s=3, workers=2, policy=EVAL)
    assert [r.reason for r in results if r.reason == "timeout"] == []


def test_display_math_at_the_end_is_the_stated_answer() -> None:
    """A response that ends on a display block with no box states that block's content."""
    assert extract_stated("So we get\n$$x = 5$$") == "x = 5"
    assert extract_stated("Solving, the value is\n\\[ 5 \\]\n") == "5"
    assert extract_stated("Hence\n$$\\frac{3}{4}$$.") == "\\frac{3}{4}"
    assert extract_stated("First $$a$$ then $$b$$") == "b"  # only the last block
    assert extract_stated("We find\n\\[ 5 \\]\nbut then more.") is None  # not the last thing
    assert extract_stated("Answer: 7\n$$7 = 3 + 4$$") == "7"  # an explicit answer wins


def test_prose_after_final_answer_states_the_value_after_is() -> None:
    assert extract_stated("Final Answer: The largest $n$ is 34.") == "34"
    assert extract_stated("Final Answer: The value of $k$ is $\\frac{1}{2}$.") == "\\frac{1}{2}"
    assert extract_stated("Final Answer: $5$") == "5"
    assert extract_stated("The answer is $x = 3$.") == "x = 3"


def test_an_approximation_after_the_exact_value_keeps_the_exact_value() -> None:
    assert ok("\\boxed{\\frac{\\sqrt{3}}{3} \\approx 0.577}", "\\frac{\\sqrt{3}}{3}")
    assert ok("\\boxed{\\frac{\\sqrt{3}}{3} \\approx 0.57735}", "\\frac{\\sqrt{3}}{3}")
    assert not ok("\\boxed{\\frac{\\sqrt{3}}{3} \\approx 0.577}", "\\frac{\\sqrt{2}}{3}")
    assert not ok("\\boxed{x \\approx 0.577}", "\\frac{\\sqrt{3}}{3}")


def test_an_expression_of_matrices_is_not_one_matrix() -> None:
    pair = (
        "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}"
        " + \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}"
    )
    assert ok(f"The sum is ${pair}$", "\\begin{pmatrix}6 & 8 \\\\ 10 & 12\\end{pmatrix}")
    assert not ok(f"The sum is ${pair}$", "\\begin{pmatrix}6 & 8 \\\\ 10 & 13\\end{pmatrix}")


def test_a_gold_that_is_a_whole_solution_states_its_final_answer() -> None:
    gold = (
        "The stock keeps $90 \\%$ of its value on Monday and $80 \\%$ of that on Tuesday, "
        "so it keeps $72 \\%$ of its value and loses the rest. "
        "Final Answer: The final answer is $28 \\%$. I hope it is correct."
    )
    assert ok("a total loss of $\\boxed{28\\%}$.", gold)
    assert not ok("a total loss of $\\boxed{72\\%}$.", gold)


def test_gold_boxes_joined_by_a_few_words_are_one_answer() -> None:
    assert ok("$\\boxed{1,2}$", "\\boxed{1} papers and \\boxed{2} bins")
    assert not ok("$\\boxed{2}$", "\\boxed{1} papers and \\boxed{2} bins")
    assert ok("\\boxed{2}", "first \\boxed{1}. After checking every case again, \\boxed{2}")
    assert ok("\\boxed{8}", "so \\boxed{4} cm. Then \\boxed{8}")  # a new sentence


def test_a_short_response_that_is_not_a_letter_is_left_to_math_verify() -> None:
    """Only a lone choice letter is taken as the whole answer: reading "Answer $ 9 $" or
    "$x = 5+5+1 = 7 =11$" as an answer string would stop math-verify from reading it."""
    assert ok("Answer $ 9 $", "9") and ok("Answer \\( (9+1) \\)", "10")
    assert ok("$x = 5+5+1 = 7 =11$", "x = 11")
    assert not ok("Answer $ 8 $", "9")


def test_a_value_the_final_answer_rejects_is_not_its_answer() -> None:
    """A sentence opening with its value states it only as the answer: one that judges it
    states nothing, so neither it nor an earlier conclusion is read, and a value given after
    the judgment ("...; we get 5") is the answer."""
    assert extract_stated("Final Answer: 3 is wrong; we get 5.") == "5"
    assert extract_stated("Final Answer: 34 is the largest such $n$.") == "34"
    assert extract_stated("Final Answer: $x = 1$ is extraneous, so $x = 5$.") == "x = 5"
    for judged in [
        "is wrong",
        "is incorrect",
        "is not the answer",
        "cannot be the answer",
        "isn't possible",
        "is impossible",
        "is the wrong answer",
        "is invalid",
    ]:
        assert extract_stated(f"Final Answer: 3 {judged}.") is None, judged
    assert extract_stated("Final Answer: 3 is wrong. I hope it is correct.") is None
    assert extract_stated("Hence $x = 3$.\nFinal Answer: 3 is not the answer.") is None
    assert extract_stated("Final Answer: 5 is prime.") is None  # true of 5, not "the answer"
    assert extract_stated("Final Answer: 12 apples.") == "12 apples"  # no verb: not judged

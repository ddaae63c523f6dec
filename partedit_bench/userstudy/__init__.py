"""2AFC user study (PartEdit paper, Appendix H): export a self-contained study and an MTurk
batch, and analyze the answers into preferences with Wilson intervals and binomial tests."""

INSTRUCTION = (
    "You are given an original image on the left, edited using the A and B methods. Please "
    "select the method that changes ONLY the part specified by PART and keeps the rest of the "
    "image unchanged. For example, if the original image has a \u201cCow\u201d, PART is "
    "\u201cHead\u201d, and EDIT is \u201cDragon\u201d, choose the method that changes the cow head "
    "to dragon head, and keeps the rest of the cow\u2019s body as it is."
)

"""The capstone: a QQ-style group chat built from the lessons."""

"""distill.store"""

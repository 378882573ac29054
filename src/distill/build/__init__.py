"""distill.build"""

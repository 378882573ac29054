"""distill.plan"""

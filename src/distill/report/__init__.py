"""distill.report"""

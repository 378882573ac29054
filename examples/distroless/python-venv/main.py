import numpy

matrix = numpy.arange(1, 10).reshape(3, 3)
print(f"numpy {numpy.__version__}: trace {int(numpy.trace(matrix))}, "
      f"determinant {round(float(numpy.linalg.det(matrix + numpy.eye(3))))}")

#include <iostream>
#include <numeric>
#include <string>
#include <vector>
#include <unistd.h>

int main() {
    std::vector<int> numbers(10);
    std::iota(numbers.begin(), numbers.end(), 1);
    std::string who = "C++";
    std::cout << "hello from " << who << " on cc (uid " << getuid() << "): 1+..+10 = "
              << std::accumulate(numbers.begin(), numbers.end(), 0) << std::endl;
    return 0;
}

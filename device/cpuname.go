package device

import (
	"os"
	"runtime"
	"strings"
	"sync"
)

// cpuName returns the processor's model name from /proc/cpuinfo, or GOARCH.
var cpuName = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOARCH + " CPU"
})

// goprobe: what a Go program (wasip1) sees of cod's seed, clock and scheduler.
//
// It prints the iteration order of a 16-key map (Go seeds its map hash from random_get, so
// from the job's seed), two values of math/rand's global source (seeded the same way since
// Go 1.20), the wall clock at main, what a 50 ms sleep measures, whether a 5 ms timer fires
// before four goroutines finish a fixed amount of work (under cod's virtual clock time moves
// one tick per clock read, not with work done, so the timer fires by the scheduler's clock
// reads), and how many 1 ms ticks a 20 ms window holds.
//
// Built by `make vectors` (vectors/build.py) as vectors/goprobe-go.wasm, as the word count is.
package main

import (
	"fmt"
	"math/rand"
	"sync"
	"time"
)

func main() {
	m := map[string]int{}
	for i := 0; i < 16; i++ {
		m[fmt.Sprintf("k%02d", i)] = i
	}
	order := ""
	for k := range m {
		order += " " + k[1:]
	}
	fmt.Println("map order:" + order)
	fmt.Println("rand:", rand.Int63(), rand.Intn(1000))
	t0 := time.Now()
	fmt.Println("now:", t0.UnixNano())
	time.Sleep(50 * time.Millisecond)
	fmt.Println("sleep 50ms took:", time.Since(t0).Nanoseconds())

	var wg sync.WaitGroup
	var mu sync.Mutex
	finished := []int{}
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			s := 0
			for i := 0; i < 200000*(g+1); i++ {
				s += i ^ g
			}
			mu.Lock()
			finished = append(finished, g)
			mu.Unlock()
			_ = s
		}(g)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	timer := time.NewTimer(5 * time.Millisecond)
	select {
	case <-timer.C:
		fmt.Println("first: the 5ms timer")
	case <-done:
		fmt.Println("first: the work")
	}
	wg.Wait()
	fmt.Println("goroutines finished:", finished)

	ticks := 0
	ticker := time.NewTicker(time.Millisecond)
	window := time.After(20 * time.Millisecond)
	for counting := true; counting; {
		select {
		case <-ticker.C:
			ticks++
		case <-window:
			counting = false
		}
	}
	fmt.Println("1ms ticks in 20ms:", ticks)
}

package queue

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// reconnectWait is the pause between attempts to reach an external NATS server; ferry keeps
// trying forever, answering 503 to hooks meanwhile.
const reconnectWait = time.Second

// Dial connects to an external NATS server or cluster (comma-separated URLs) and keeps the
// connection alive across server restarts.
func Dial(url, name string, logger *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { logger.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	return nc, nil
}

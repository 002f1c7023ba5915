// Package franzgo only pins franz-go's kgo package, whose own integration tests run.sh
// runs against a broker (go test github.com/twmb/franz-go/pkg/kgo).
package franzgo

import _ "github.com/twmb/franz-go/pkg/kgo"
